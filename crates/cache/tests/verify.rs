//! The verification rule, one property per test.

use sluice_cache::{Reason, Verdict, verify};

fn refused(a: &str, b: &str) -> Reason {
    match verify(a, b) {
        Verdict::Mismatch(r) => r,
        Verdict::Match => panic!("{a:?} / {b:?} must not share an answer"),
    }
}

fn accepted(a: &str, b: &str) {
    assert_eq!(
        verify(a, b),
        Verdict::Match,
        "{a:?} / {b:?} should share an answer"
    );
    assert_eq!(verify(b, a), Verdict::Match, "verify is symmetric");
}

#[test]
fn function_words_case_and_punctuation_do_not_matter() {
    accepted("How do I reset my password?", "how can i reset my password");
    accepted(
        "What's the capital of France?",
        "What is the capital of France",
    );
    accepted(
        "Please explain recursion with an example.",
        "Explain recursion with an example",
    );
}

#[test]
fn inflections_synonyms_and_spellings_meet() {
    accepted("sorting a list", "sort lists");
    accepted("buy a car", "purchase a car");
    accepted(
        "How do you caramelize onions?",
        "How do you caramelise onions?",
    );
}

#[test]
fn order_matters_where_the_embedding_cannot_see_it() {
    assert_eq!(
        refused("convert USD to EUR", "convert EUR to USD"),
        Reason::Order
    );
    assert_eq!(
        refused("Is Rust faster than Go?", "Is Go faster than Rust?"),
        Reason::Order
    );
    assert_eq!(
        refused(
            "Can I give my child adult cough syrup?",
            "Can I give my adult child cough syrup?"
        ),
        Reason::Order
    );
}

#[test]
fn of_and_in_inversions_are_the_same_question() {
    accepted(
        "What is the capital of France?",
        "What is France's capital?",
    );
    accepted(
        "How do I reverse a list in Python?",
        "How do I reverse a Python list?",
    );
}

#[test]
fn numbers_must_agree() {
    assert_eq!(
        refused("What is 15% of 200?", "What is 15% of 300?"),
        Reason::Numbers
    );
    assert_eq!(
        refused("flights on March 5", "flights on March 6"),
        Reason::Numbers
    );
    accepted("top 5 stocks", "top five stocks");
    accepted("twenty five dollars", "$25");
}

#[test]
fn negations_must_agree_in_count_and_scope() {
    assert_eq!(
        refused("recipes with eggs", "recipes without eggs"),
        Reason::Negation
    );
    assert_eq!(
        refused("Why does my build fail?", "Why doesn't my build fail?"),
        Reason::Negation
    );
    accepted(
        "Why doesn't my code compile?",
        "Why does my code not compile?",
    );
    assert_eq!(
        refused("do not use X, use Y", "use X, do not use Y"),
        Reason::Negation
    );
}

#[test]
fn scope_words_are_content() {
    assert_eq!(
        refused("Delete my messages", "Delete all my messages"),
        Reason::Words
    );
    assert_eq!(
        refused("How do I log in?", "How do I log out?"),
        Reason::Words
    );
    assert_eq!(
        refused("flights to Paris", "flights from Paris"),
        Reason::Words
    );
    assert_eq!(
        refused("Why was my card declined?", "When was my card declined?"),
        Reason::Words
    );
}

#[test]
fn code_operators_and_currency_signs_count() {
    assert_eq!(
        refused("what does x += 1 do", "what does x -= 1 do"),
        Reason::Words
    );
    assert_eq!(refused("learn C++", "learn C#"), Reason::Words);
}

#[test]
fn no_content_no_match() {
    assert_eq!(refused("hi", "hello"), Reason::TooLittle);
    assert_eq!(refused("thanks!", "hello there"), Reason::TooLittle);
}
