//! The byte-pair merge of OpenAI's `tiktoken` (`src/lib.rs`, MIT), counting instead of
//! collecting: start from single bytes, repeatedly merge the adjacent pair whose joined
//! bytes have the lowest rank, until no adjacent pair is a token. Short pieces use
//! tiktoken's quadratic loop over a small vector; pieces of 100 bytes and more its heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Rank;

/// Tokens in `piece` (a piece of the pre-tokenizer that is not itself a token).
pub fn count(piece: &[u8], rank: impl Fn(&[u8]) -> Option<Rank>) -> usize {
    match piece.len() {
        0 | 1 => piece.len(),
        n if n < 100 => count_small(piece, &rank),
        _ => count_large(piece, &rank),
    }
}

fn count_small(piece: &[u8], rank: &impl Fn(&[u8]) -> Option<Rank>) -> usize {
    // (start, rank of the pair starting there).
    let mut parts: Vec<(usize, Rank)> = Vec::with_capacity(piece.len() + 1);
    let mut min = (Rank::MAX, usize::MAX);
    for i in 0..piece.len() - 1 {
        let r = rank(&piece[i..i + 2]).unwrap_or(Rank::MAX);
        if r < min.0 {
            min = (r, i);
        }
        parts.push((i, r));
    }
    parts.push((piece.len() - 1, Rank::MAX));
    parts.push((piece.len(), Rank::MAX));

    // The rank of the pair at `i` once `parts[i + 1]` is gone (it is still there).
    let pair = |parts: &[(usize, Rank)], i: usize| {
        if i + 3 < parts.len() {
            rank(&piece[parts[i].0..parts[i + 3].0]).unwrap_or(Rank::MAX)
        } else {
            Rank::MAX
        }
    };
    while min.0 != Rank::MAX {
        let i = min.1;
        if i > 0 {
            parts[i - 1].1 = pair(&parts, i - 1);
        }
        parts[i].1 = pair(&parts, i);
        parts.remove(i + 1);
        min = (Rank::MAX, usize::MAX);
        for (i, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
            if r < min.0 {
                min = (r, i);
            }
        }
    }
    parts.len() - 1
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct Merge {
    start: usize,
    rank: Rank,
}

impl Ord for Merge {
    // A min-heap on rank, then on position: the lowest rank merges first, leftmost on a tie.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Part {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}

fn count_large(piece: &[u8], rank: &impl Fn(&[u8]) -> Option<Rank>) -> usize {
    let mut state = Vec::with_capacity(piece.len());
    state.push(Part {
        prev: usize::MAX,
        end: 1,
        next_end: 2,
        next_rank: Rank::MAX,
    });
    let mut heap = BinaryHeap::with_capacity(piece.len());
    for i in 0..piece.len() - 1 {
        if let Some(r) = rank(&piece[i..i + 2]) {
            heap.push(Merge { start: i, rank: r });
            state[i].next_rank = r;
        }
        state.push(Part {
            prev: i,
            end: i + 2,
            next_end: i + 3,
            next_rank: Rank::MAX,
        });
    }
    let potential =
        |state: &mut Vec<Part>, heap: &mut BinaryHeap<Merge>, start: usize, end: usize| {
            state[start].next_end = end;
            state[start].next_rank = Rank::MAX;
            if end <= piece.len()
                && let Some(r) = rank(&piece[start..end])
            {
                heap.push(Merge { start, rank: r });
                state[start].next_rank = r;
            }
        };
    while let Some(left) = heap.pop() {
        if left.rank == Rank::MAX {
            break;
        }
        if left.rank != state[left.start].next_rank {
            continue; // invalidated by an earlier merge
        }
        let left_start = left.start;
        let right_start = state[left_start].end;
        let right_end = state[left_start].next_end;
        let right_next_end = state[right_start].next_end;
        state[left_start].end = right_end;
        potential(&mut state, &mut heap, left_start, right_next_end);
        if right_end < state.len() {
            state[right_end].prev = left_start;
        }
        if left_start > 0 {
            let prev_start = state[left_start].prev;
            potential(&mut state, &mut heap, prev_start, right_end);
        }
        state[right_start].next_rank = Rank::MAX;
    }
    let mut n = 0;
    let mut i = 0;
    while i < state.len() {
        n += 1;
        i = state[i].end;
    }
    n
}
