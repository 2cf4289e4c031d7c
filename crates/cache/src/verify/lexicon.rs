//! The word lists of the second check: question words, relation words, negations,
//! clause breaks, stop words, general synonyms, and how a word is folded (British
//! spellings, stems).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Question words that ask for something other than a thing or a way, folded; they must
/// agree, wherever they stand ("why was it declined" / "it was declined, why?").
pub(super) const ASKS: &[(&str, &str)] = &[
    ("why", "why"),
    ("when", "when"),
    ("where", "where"),
    ("who", "who"),
    ("whom", "who"),
    ("whose", "whose"),
];

/// Function words that relate the words around them (direction, comparison, purpose,
/// means): dropped from the content but never let two words around them swap places.
pub(super) const RELATIONS: &[&str] = &[
    "to", "than", "for", "by", "with", "vs", "versus", "into", "onto", "via", "between", "about",
    "as", "at", "on", "upon", "through", "within",
];

/// Words that negate their clause.
pub(super) const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
];

/// Words that end a clause (negations are scoped to theirs).
pub(super) const CLAUSE_BREAKS: &[&str] = &[
    "but", "and", "or", "because", "if", "unless", "while", "whereas", "although", "though", "so",
    "then",
];

/// Function words and politeness: dropped before comparing. Deliberately absent (they
/// are content): direction and state words (from, off, out, up, down, over, under,
/// before, after, since, until), quantifiers and degree (all, every, each, only, most,
/// more, less, few, many, much, too), time (today, next, last, now), why/when/where/who,
/// was/were, he/she/his/her.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "another", "such", "i",
    "me", "my", "mine", "myself", "we", "us", "our", "ours", "you", "your", "yours", "yourself",
    "it", "its", "itself", "they", "them", "their", "theirs", "one", "someone", "somebody",
    "anyone", "anybody", "something", "anything", "there", "here", "be", "is", "are", "am",
    "being", "been", "do", "does", "did", "doing", "done", "have", "has", "having", "can",
    "could", "would", "will", "shall", "should", "might", "must", "let", "lets", "gonna",
    "wanna", "what", "which", "how", "whats", "hows", "whether", "please", "pls", "plz",
    "kindly", "thanks", "thank", "thx", "hi", "hello", "hey", "dear", "ok", "okay", "well",
    "um", "uh", "just", "really", "actually", "basically", "exactly", "also", "even", "still",
    "anyway", "quick", "quickly", "question", "wondering", "wonder", "curious", "know", "tell",
    "explain", "describe", "help", "want", "like", "way", "ways", "possible", "able", "guys",
    "folks", "someone", "idea", "ideas", "im", "ive", "youre", "give", "show", "get", "got",
    "say", "said", "mean", "means", "meaning", "definition", "define", "thing", "things",
    "kind", "sure", "correct", "right", "properly", "exact", "e", "g", "eg", "ie", "etc",
];

pub(super) fn stopwords() -> &'static HashMap<&'static str, ()> {
    static S: OnceLock<HashMap<&'static str, ()>> = OnceLock::new();
    S.get_or_init(|| STOPWORDS.iter().map(|w| (*w, ())).collect())
}

/// General-English synonyms folded to the first word of each group. Only words that
/// mean the same in any domain; near-synonyms that can change an answer (big/huge,
/// error/exception, fast/cheap) stay apart.
const SYNONYMS: &[&[&str]] = &[
    &["big", "large"],
    &["small", "little", "tiny"],
    &["begin", "start", "commence"],
    &["finish", "complete"],
    &["buy", "purchase"],
    &["car", "automobile"],
    &["fix", "repair", "resolve", "solve"],
    &["make", "create"],
    &["remove", "delete", "erase"],
    &["use", "utilize", "utilise"],
    &["choose", "pick", "select"],
    &["cheap", "inexpensive"],
    &["expensive", "costly", "pricey"],
    &["doctor", "physician"],
    &["child", "kid", "children", "kids"],
    &["movie", "film"],
    &["sofa", "couch"],
    &["fast", "quick", "speedy", "rapid"],
    &["error", "err"],
    &["maximum", "max"],
    &["minimum", "min"],
    &["kilometer", "kilometre", "km"],
    &["meter", "metre"],
    &["kilogram", "kg", "kilo"],
    &["pound", "lb", "lbs"],
    &["mile", "mi"],
    &["hour", "hr", "hrs", "h"],
    &["minute", "mins"],
    &["second", "sec", "secs"],
    &["percent", "percentage", "pct"],
    &["dollar", "usd"],
    &["euro", "eur"],
    &["email", "mail", "e-mail"],
    &["website", "site"],
    &["photo", "picture", "pic", "image"],
    &["smartphone", "phone", "cellphone"],
    &["password", "passcode", "pw"],
    &["signin", "login"],
    &["signup", "register"],
    &["directory", "folder"],
    &["function", "func", "fn"],
    &["database", "db"],
    &["application", "app"],
    &["configuration", "config"],
    &["repository", "repo"],
    &["documentation", "docs", "doc"],
    &["javascript", "js"],
    &["typescript", "ts"],
    &["python", "py"],
    &["weather", "forecast"],
    &["recipe", "recipes"],
    &["near", "nearby", "close"],
    &["happen", "occur"],
    &["allow", "permit"],
    &["need", "require"],
    &["answer", "reply", "respond"],
    &["cost", "price"],
    &["trip", "journey"],
    &["job", "occupation"],
    &["stomach", "tummy", "belly"],
    &["difference", "differ", "different"],
];

fn synonyms() -> &'static HashMap<String, &'static str> {
    static S: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    S.get_or_init(|| {
        let mut m = HashMap::new();
        for group in SYNONYMS {
            for w in group.iter() {
                m.insert((*w).to_owned(), group[0]);
            }
        }
        // Their stems too, so an inflected synonym meets its group ("required" is
        // stemmed to "requir" before the look-up, and must still meet "need").
        for group in SYNONYMS {
            for w in group.iter() {
                // Short stems are ambiguous ("util" is also "utility"): exact words only.
                let s = stem(&american(w));
                if s.len() >= 5 {
                    m.entry(s).or_insert(group[0]);
                }
            }
        }
        m
    })
}

/// A content word's canonical form: synonyms folded, then stemmed (and folded again,
/// so "purchased" meets "buy").
pub(super) fn canonical(w: &str) -> String {
    if let Some(c) = synonyms().get(w) {
        return stem(c);
    }
    let s = stem(&american(w));
    if let Some(c) = synonyms().get(&s) {
        return stem(c);
    }
    s
}

/// British spellings folded to American by suffix (-ise, -isation, -our, -tre), so
/// "caramelise" meets "caramelize" and "centre" meets "center". Both sides are folded
/// alike; a fold only matters where it merges two different words, which these suffixes
/// almost never do.
fn american(w: &str) -> String {
    if !w.is_ascii() || w.len() < 6 {
        return w.to_owned();
    }
    for (gb, us) in [
        ("isation", "ization"),
        ("isations", "izations"),
        ("ising", "izing"),
        ("ised", "ized"),
        ("ises", "izes"),
        ("ise", "ize"),
        ("our", "or"),
        ("ours", "ors"),
        ("tre", "ter"),
        ("tres", "ters"),
    ] {
        if let Some(base) = w.strip_suffix(gb) {
            return format!("{base}{us}");
        }
    }
    w.to_owned()
}

/// Snowball (Porter 2) English stemming, so inflections of one word meet ("sorting",
/// "sorted", "sorts"). Both sides are stemmed alike.
fn stem(w: &str) -> String {
    static S: OnceLock<rust_stemmers::Stemmer> = OnceLock::new();
    S.get_or_init(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English))
        .stem(w)
        .into_owned()
}
