//! `sluice-bpe` against `tiktoken-rs`: the compiled-in vocabularies are tiktoken's, byte
//! for byte, and the counts are equal on a varied corpus.
//!
//! The data files are generated from tiktoken-rs by this test:
//! `SLUICE_BPE_WRITE=1 cargo nextest run -p sluice-bpe data_is_tiktokens`.

#![allow(clippy::unwrap_used, reason = "tests")]

use sluice_bpe::{Encoding, Vocabulary};
use tiktoken_rs::CoreBPE;

/// Every rank below the first special token, as tiktoken decodes it (empty if unused).
fn vocabulary(bpe: &CoreBPE, below: u32) -> Vec<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = (0..below)
        .map(|r| bpe.decode_bytes(&[r]).unwrap_or_default())
        .collect();
    while tokens.last().is_some_and(Vec::is_empty) {
        tokens.pop();
    }
    tokens
}

fn check(bpe: &CoreBPE, first_special: u32, file: &str, ours: fn() -> Option<&'static Encoding>) {
    let tokens = vocabulary(bpe, first_special);
    let data = Vocabulary::write(&tokens).unwrap();
    let path = format!("{}/data/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SLUICE_BPE_WRITE").is_some() {
        std::fs::write(&path, &data).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert!(
        committed == data,
        "{file} differs from tiktoken-rs's vocabulary"
    );
    let ours = ours().unwrap();
    assert_eq!(ours.len(), tokens.iter().filter(|t| !t.is_empty()).count());
    for (rank, t) in tokens.iter().enumerate() {
        assert_eq!(ours.token(rank as u32), t.as_slice());
        if !t.is_empty() {
            assert_eq!(ours.rank(t), Some(rank as u32));
        }
    }
}

#[test]
fn data_is_tiktokens() {
    check(
        tiktoken_rs::o200k_base_singleton(),
        199_999,
        "o200k_base.bin",
        Encoding::o200k,
    );
    check(
        tiktoken_rs::cl100k_base_singleton(),
        100_257,
        "cl100k_base.bin",
        Encoding::cl100k,
    );
}

/// Texts that exercise each branch of the two pre-tokenizers and both merge loops.
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "Hello world",
        "Hello, world! How's it going? I'm fine; they'll see, we've done, you'd know.",
        "HELLO WORLD'S END. CamelCaseIdentifiers and snake_case_names.",
        "The year 2024 had 366 days; 1234567890 and 3.14159 and -42 and 1e10.",
        "fn main() {\n    println!(\"{}\", x + 1);\n}\n\n\t\tindented\r\n",
        "    leading spaces and trailing spaces    ",
        "line one\n\n\nline four\r\n\r\nline six",
        "https://example.com/path/to/file?query=1&b=2#frag",
        "日本語のテキストと漢字かな交じり文。中文文本，还有标点符号！",
        "Ελληνικά κείμενα και Русский текст и العربية والعبرית",
        "emoji 👩‍👩‍👧‍👦🎉🚀 and flags 🇫🇷🇯🇵 and é (e\u{301}) combining",
        "<|endoftext|> is text here, not a special token <|fim_prefix|>",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "{\"json\": [1, 2, {\"nested\": true, \"null\": null}], \"s\": \"x\\ny\"}",
        "Ünïcödé Ĉàpîtàls ÀND lower ß straße İstanbul",
        "tabs\there\tand\u{a0}non-breaking\u{2003}em-space\u{3000}ideographic",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Long pieces reach the heap merge (100 bytes and more, not themselves tokens).
    texts.push("=".repeat(333));
    texts.push("a".repeat(1000));
    texts.push("x7".repeat(150));
    texts.push("🙂".repeat(60));
    texts.push(
        "ThisIsAVeryLongCamelCaseIdentifierThatKeepsGoingAndGoingWithoutAnySpacesAtAllReallyLong"
            .repeat(3),
    );
    texts.push(" ".repeat(257) + "x");
    // Pseudo-random mixtures from a fixed seed: letters of several scripts, digits,
    // punctuation and whitespace runs.
    let alphabet: Vec<char> = "abcXYZ019 \n\t.,'!?-_/()[]{}\"éßжשع漢かな😀\u{301}\r'sll'"
        .chars()
        .collect();
    let mut seed: u64 = 0x5eed;
    for _ in 0..300 {
        let len = (seed % 200) as usize;
        let mut s = String::new();
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        texts.push(s);
    }
    texts
}

#[test]
fn counts_equal_tiktokens() {
    let pairs = [
        (
            tiktoken_rs::o200k_base_singleton(),
            Encoding::o200k().unwrap(),
            "o200k",
        ),
        (
            tiktoken_rs::cl100k_base_singleton(),
            Encoding::cl100k().unwrap(),
            "cl100k",
        ),
    ];
    for (theirs, ours, name) in pairs {
        for text in corpus() {
            assert_eq!(
                ours.count(&text),
                theirs.encode_ordinary(&text).len(),
                "{name}: {text:?}"
            );
        }
    }
}
