//! A run's budget: tokens, cost and model calls, held in memory by the process that runs
//! it, in a tree for delegation. A child run's reservations are also reservations of its
//! parent and every ancestor, all or nothing, so however many children a run starts, and
//! however they run at once, the tree never spends more than its top run may: delegation
//! cannot multiply a budget.
//!
//! A call reserves before it starts (the prompt it will send plus the most it may answer,
//! and that bound's cost) and settles when it ends, with what it used. A reservation that
//! is dropped unsettled gives everything back.

use std::sync::{Arc, Mutex, MutexGuard};

/// What a run may use, or has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunMeters {
    pub tokens: u64,
    pub cost_nanos: u64,
    pub llm_calls: u64,
}

impl RunMeters {
    fn add(&mut self, o: RunMeters) {
        self.tokens = self.tokens.saturating_add(o.tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(o.cost_nanos);
        self.llm_calls = self.llm_calls.saturating_add(o.llm_calls);
    }

    fn sub(&mut self, o: RunMeters) {
        self.tokens = self.tokens.saturating_sub(o.tokens);
        self.cost_nanos = self.cost_nanos.saturating_sub(o.cost_nanos);
        self.llm_calls = self.llm_calls.saturating_sub(o.llm_calls);
    }

    fn min(self, o: RunMeters) -> RunMeters {
        RunMeters {
            tokens: self.tokens.min(o.tokens),
            cost_nanos: self.cost_nanos.min(o.cost_nanos),
            llm_calls: self.llm_calls.min(o.llm_calls),
        }
    }
}

/// The meter a reservation did not fit in, and whose run it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub meter: Meter,
    /// 0: the run itself; 1: its parent; and so on up.
    pub ancestor: usize,
    /// The id of that run.
    pub run: Arc<str>,
    pub cap: u64,
    /// Spent and reserved before this reservation.
    pub used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    Tokens,
    Cost,
    LlmCalls,
}

#[derive(Debug)]
struct Node {
    id: Arc<str>,
    parent: Option<usize>,
    caps: RunMeters,
    reserved: RunMeters,
    /// Settled by the run and its descendants.
    spent: RunMeters,
    /// Settled by the run's own calls.
    own: RunMeters,
    /// The run's own calls' tokens: (prompt, completion).
    own_split: (u64, u64),
}

/// One run's place in its tree. Cloning it shares the run (not a new one).
#[derive(Debug, Clone)]
pub struct RunBudget {
    tree: Arc<Mutex<Vec<Node>>>,
    at: usize,
}

/// A reservation of one model call. Settle it with what the call used; dropped unsettled,
/// it gives everything back.
#[derive(Debug)]
pub struct RunReservation {
    budget: RunBudget,
    amount: RunMeters,
    settled: bool,
}

impl RunBudget {
    /// The budget of a top-level run, `id`.
    pub fn new(id: &str, caps: RunMeters) -> RunBudget {
        RunBudget {
            tree: Arc::new(Mutex::new(vec![Node {
                id: Arc::from(id),
                parent: None,
                caps,
                reserved: RunMeters::default(),
                spent: RunMeters::default(),
                own: RunMeters::default(),
                own_split: (0, 0),
            }])),
            at: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The run and its ancestors, the run first.
    fn chain(nodes: &[Node], at: usize) -> Vec<usize> {
        let mut chain = vec![at];
        let mut i = at;
        while let Some(p) = nodes[i].parent {
            chain.push(p);
            i = p;
        }
        chain
    }

    /// A child run, whose caps are the smaller of `caps` and what this run has left now.
    /// Its calls count against this run and every ancestor as well.
    pub fn child(&self, id: &str, caps: RunMeters) -> RunBudget {
        let left = self.remaining();
        let mut nodes = self.lock();
        nodes.push(Node {
            id: Arc::from(id),
            parent: Some(self.at),
            caps: caps.min(left),
            reserved: RunMeters::default(),
            spent: RunMeters::default(),
            own: RunMeters::default(),
            own_split: (0, 0),
        });
        let at = nodes.len() - 1;
        drop(nodes);
        RunBudget {
            tree: self.tree.clone(),
            at,
        }
    }

    /// What the run may still reserve: for each meter, the least that any run on its chain
    /// has left (caps less spent and reserved).
    pub fn remaining(&self) -> RunMeters {
        let nodes = self.lock();
        let mut left = RunMeters {
            tokens: u64::MAX,
            cost_nanos: u64::MAX,
            llm_calls: u64::MAX,
        };
        for i in Self::chain(&nodes, self.at) {
            let n = &nodes[i];
            let mut used = n.spent;
            used.add(n.reserved);
            let mut cap = n.caps;
            cap.sub(used);
            left = left.min(cap);
        }
        left
    }

    /// The run's caps (a child's, as capped at its start).
    pub fn caps(&self) -> RunMeters {
        self.lock()[self.at].caps
    }

    /// Settled by the run's own calls (not its children's): what its ledger rows add up to.
    pub fn own_spent(&self) -> RunMeters {
        self.lock()[self.at].own
    }

    /// The tokens of the run's own calls, as (prompt, completion), when settled with
    /// [`RunReservation::settle_split`].
    pub fn own_tokens(&self) -> (u64, u64) {
        self.lock()[self.at].own_split
    }

    /// The run's id.
    pub fn id(&self) -> Arc<str> {
        self.lock()[self.at].id.clone()
    }

    /// Settled by the run and all its descendants.
    pub fn spent(&self) -> RunMeters {
        self.lock()[self.at].spent
    }

    /// Reserves one model call of up to `tokens` and `cost_nanos`, in the run and every
    /// ancestor, all or nothing.
    pub fn reserve(&self, tokens: u64, cost_nanos: u64) -> Result<RunReservation, Exceeded> {
        let amount = RunMeters {
            tokens,
            cost_nanos,
            llm_calls: 1,
        };
        let mut nodes = self.lock();
        let chain = Self::chain(&nodes, self.at);
        for (ancestor, &i) in chain.iter().enumerate() {
            let n = &nodes[i];
            for (meter, cap, used, want) in [
                (
                    Meter::LlmCalls,
                    n.caps.llm_calls,
                    n.spent.llm_calls + n.reserved.llm_calls,
                    amount.llm_calls,
                ),
                (
                    Meter::Tokens,
                    n.caps.tokens,
                    n.spent.tokens.saturating_add(n.reserved.tokens),
                    amount.tokens,
                ),
                (
                    Meter::Cost,
                    n.caps.cost_nanos,
                    n.spent.cost_nanos.saturating_add(n.reserved.cost_nanos),
                    amount.cost_nanos,
                ),
            ] {
                if used.saturating_add(want) > cap {
                    return Err(Exceeded {
                        meter,
                        ancestor,
                        run: n.id.clone(),
                        cap,
                        used,
                    });
                }
            }
        }
        for &i in &chain {
            nodes[i].reserved.add(amount);
        }
        drop(nodes);
        Ok(RunReservation {
            budget: self.clone(),
            amount,
            settled: false,
        })
    }
}

impl RunReservation {
    /// The call ended having used `tokens` and `cost_nanos` (which may differ from what was
    /// reserved): the reservation becomes that spend, in the run and every ancestor.
    pub fn settle(self, tokens: u64, cost_nanos: u64) {
        self.settle_split(tokens, 0, cost_nanos);
    }

    /// [`Self::settle`] with the tokens told apart: (prompt, completion).
    pub fn settle_split(mut self, prompt: u64, completion: u64, cost_nanos: u64) {
        let used = RunMeters {
            tokens: prompt.saturating_add(completion),
            cost_nanos,
            llm_calls: 1,
        };
        let mut nodes = self.budget.lock();
        for i in RunBudget::chain(&nodes, self.budget.at) {
            nodes[i].reserved.sub(self.amount);
            nodes[i].spent.add(used);
        }
        let own = &mut nodes[self.budget.at];
        own.own.add(used);
        own.own_split.0 = own.own_split.0.saturating_add(prompt);
        own.own_split.1 = own.own_split.1.saturating_add(completion);
        self.settled = true;
    }
}

impl Drop for RunReservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut nodes = self.budget.lock();
        for i in RunBudget::chain(&nodes, self.budget.at) {
            nodes[i].reserved.sub(self.amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(tokens: u64, cost: u64, calls: u64) -> RunMeters {
        RunMeters {
            tokens,
            cost_nanos: cost,
            llm_calls: calls,
        }
    }

    #[test]
    fn a_run_reserves_settles_and_gives_back() {
        let run = RunBudget::new("root", caps(1000, 100, 3));
        let r = run.reserve(600, 60).unwrap();
        let refused = run.reserve(500, 10).unwrap_err();
        assert_eq!(
            refused,
            Exceeded {
                meter: Meter::Tokens,
                ancestor: 0,
                run: Arc::from("root"),
                cap: 1000,
                used: 600
            }
        );
        r.settle(200, 20);
        assert_eq!(run.spent(), caps(200, 20, 1));
        assert_eq!(run.remaining(), caps(800, 80, 2));
        drop(run.reserve(800, 80).unwrap()); // dropped: given back
        assert_eq!(run.remaining(), caps(800, 80, 2));
        run.reserve(1, 1).unwrap().settle(1, 1);
        run.reserve(1, 1).unwrap().settle(1, 1);
        assert_eq!(run.reserve(1, 1).unwrap_err().meter, Meter::LlmCalls);
    }

    #[test]
    fn a_child_is_capped_by_what_its_parent_has_left_and_counts_against_it() {
        let parent = RunBudget::new("root", caps(1000, 1000, 10));
        parent.reserve(300, 300).unwrap().settle(300, 300);
        let child = parent.child("child", caps(5000, 5000, 5));
        assert_eq!(
            child.caps(),
            caps(700, 700, 5),
            "capped by the parent's remainder"
        );
        child.reserve(400, 400).unwrap().settle(400, 400);
        assert_eq!(parent.spent(), caps(700, 700, 2));
        assert_eq!(parent.own_spent(), caps(300, 300, 1));
        assert_eq!(child.own_spent(), caps(400, 400, 1));
        // A second child started now sees only what is left.
        let second = parent.child("child", caps(5000, 5000, 5));
        assert_eq!(second.caps().tokens, 300);
        let e = second.reserve(301, 1).unwrap_err();
        assert_eq!((e.meter, e.ancestor), (Meter::Tokens, 0));
    }

    #[test]
    fn parallel_children_never_spend_more_than_their_parent() {
        let parent = RunBudget::new("root", caps(1000, 1000, 100));
        // Both start with the whole remainder; their reservations race for it.
        let a = parent.child("child", caps(1000, 1000, 100));
        let b = parent.child("child", caps(1000, 1000, 100));
        let ra = a.reserve(700, 700).unwrap();
        let e = b.reserve(700, 700).unwrap_err();
        assert_eq!(e.ancestor, 1, "refused by the parent, not by b's own caps");
        ra.settle(700, 700);
        b.reserve(300, 300).unwrap().settle(300, 300);
        assert_eq!(parent.spent(), caps(1000, 1000, 2));
    }

    /// Random reservations, settlements (never above what was reserved, as the loop caps
    /// each call's output) and drops over a three-level tree: no run ever has more spent
    /// and reserved than its caps, and a run's spend is its own plus its children's.
    #[test]
    fn no_run_in_a_tree_ever_exceeds_its_caps() {
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n.max(1)
        };
        for _ in 0..50 {
            let root = RunBudget::new("root", caps(10_000, 5_000, 40));
            let mut runs = vec![root.clone()];
            let mut open: Vec<RunReservation> = Vec::new();
            for _ in 0..400 {
                match next(5) {
                    0 if runs.len() < 8 => {
                        let parent = runs[next(runs.len() as u64) as usize].clone();
                        runs.push(parent.child("child", caps(next(8_000), next(4_000), next(30))));
                    }
                    1 | 2 => {
                        let run = &runs[next(runs.len() as u64) as usize];
                        if let Ok(r) = run.reserve(next(3_000), next(1_500)) {
                            open.push(r);
                        }
                    }
                    3 if !open.is_empty() => {
                        let r = open.swap_remove(next(open.len() as u64) as usize);
                        let (t, c) = (r.amount.tokens, r.amount.cost_nanos);
                        r.settle(next(t + 1), next(c + 1));
                    }
                    _ if !open.is_empty() => {
                        drop(open.swap_remove(next(open.len() as u64) as usize));
                    }
                    _ => {}
                }
                let nodes = root.lock();
                for n in nodes.iter() {
                    let mut used = n.spent;
                    used.add(n.reserved);
                    assert!(used.tokens <= n.caps.tokens, "{n:?}");
                    assert!(used.cost_nanos <= n.caps.cost_nanos, "{n:?}");
                    assert!(used.llm_calls <= n.caps.llm_calls, "{n:?}");
                }
                for (i, n) in nodes.iter().enumerate() {
                    let mut sum = n.own;
                    for c in nodes.iter().filter(|c| c.parent == Some(i)) {
                        sum.add(c.spent);
                    }
                    assert_eq!(sum, n.spent, "spend is own plus children's");
                }
            }
            drop(open);
            let nodes = root.lock();
            assert!(nodes.iter().all(|n| n.reserved == RunMeters::default()));
        }
    }
}
