//! Text analysis: fields and their weights, folding words into terms, parsing queries, snippets.

use std::collections::HashMap;

use super::*;

/// Text fields of a unit: (id, name, weight).
pub(crate) const FIELDS: &[(&str, u8)] = &[
    ("title", 4),
    ("summary", 2),
    ("body", 1),
    ("themes", 2),
    ("partners", 1),
    ("outcomes", 1),
    ("places", 1),
    ("item", 2),
    ("notes", 1),
];
pub(crate) const F_TITLE: u8 = 0;
pub(crate) const F_SUMMARY: u8 = 1;
pub(crate) const F_BODY: u8 = 2;
pub(crate) const F_THEMES: u8 = 3;
pub(crate) const F_PARTNERS: u8 = 4;
pub(crate) const F_OUTCOMES: u8 = 5;
pub(crate) const F_PLACES: u8 = 6;
pub(crate) const F_ITEM: u8 = 7;
pub(crate) const F_NOTES: u8 = 8;
/// Not a text: the language of the texts that follow (a texts row's first entry, when the
/// record names one), so that a row is always analyzed the way it was indexed.
pub(crate) const F_LANGUAGE: u8 = 255;

pub(crate) const STOP_WORDS: &[&str] = &[
    "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its",
    "of", "on", "or", "that", "the", "their", "this", "to", "was", "were", "with",
];

/// Letters that Unicode does not decompose into a base letter and marks, folded by hand.
fn fold_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'ł' => "l",
        'đ' => "d",
        'ø' => "o",
        'ı' => "i",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'þ' => "th",
        'ð' => "d",
        _ => return None,
    })
}

/// Lowercases and folds the diacritics of one word (no stemming): Unicode compatibility
/// decomposition (NFKD), combining marks dropped, a few letters folded by hand (`ł` → `l`,
/// `ß` → `ss`). `Café`, `cafe\u{301}` and `CAFÉ` all give `cafe`.
pub(crate) fn fold(word: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    if word.is_ascii() {
        return word.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(word.len());
    for c in word.chars().flat_map(char::to_lowercase).nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        match fold_letter(c) {
            Some(f) => out.push_str(f),
            None => out.push(c),
        }
    }
    out
}

/// The Snowball stemmers this program has, by ISO 639-1 language code; every other language
/// (Czech, Polish, Latvian, ...) is folded but not stemmed.
pub(crate) const STEMMED: &[(&str, rust_stemmers::Algorithm)] = &[
    ("en", rust_stemmers::Algorithm::English),
    ("it", rust_stemmers::Algorithm::Italian),
    ("es", rust_stemmers::Algorithm::Spanish),
    ("pt", rust_stemmers::Algorithm::Portuguese),
    ("nl", rust_stemmers::Algorithm::Dutch),
    ("fr", rust_stemmers::Algorithm::French),
    ("de", rust_stemmers::Algorithm::German),
];

/// The two-letter (ISO 639-1) code of a language given in three letters (ISO 639-2) for the
/// languages analyzed here (`ita` → `it`); any other code as it is.
pub(crate) fn two_letter(code: &str) -> &str {
    match code {
        "eng" => "en",
        "ita" => "it",
        "spa" => "es",
        "por" => "pt",
        "nld" | "dut" => "nl",
        "fra" | "fre" => "fr",
        "deu" | "ger" => "de",
        other => other,
    }
}

/// The language of a record that has none (projects, groups, agendas): the federation's
/// working language.
pub(crate) const DEFAULT_LANGUAGE: &str = "en";

/// The words whose terms [`TERM_MEMO`] remembers: at most this long, and their terms too (a
/// longer one is worked out each time)...
pub(crate) const MAX_MEMO_WORD_BYTES: usize = 40;
/// ...and at most this many for each analyzer (when full, it is emptied and starts again).
pub(crate) const MAX_MEMO_TERMS: usize = 8192;

std::thread_local! {
    /// The terms of the words seen lately, by analyzer ([`Analyzer::number`]): folding and
    /// stemming took most of the catalog's time, and the same words come again and again.
    /// [`Analyzer::term`] is a function of the analyzer and the word only, so a remembered
    /// term is the one it would work out. At most about 8 × 8,192 × 150 bytes a thread.
    static TERM_MEMO: std::cell::RefCell<Vec<HashMap<String, Option<String>>>> =
        std::cell::RefCell::new(vec![HashMap::new(); STEMMED.len() + 1]);
}

/// How the words of one language become terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Analyzer(Option<rust_stemmers::Algorithm>);

impl Analyzer {
    /// The analyzer of an ISO 639 language code (`""`: [`DEFAULT_LANGUAGE`]).
    pub(crate) fn of(language: &str) -> Analyzer {
        let language = match two_letter(language) {
            "" => DEFAULT_LANGUAGE,
            l => l,
        };
        Analyzer(
            STEMMED
                .iter()
                .find(|(code, _)| *code == language)
                .map(|(_, a)| *a),
        )
    }

    /// Folding only (a language without a stemmer).
    pub(crate) const FOLD_ONLY: Analyzer = Analyzer(None);

    /// Every analyzer a query word is looked up with when no language is asked for.
    pub(crate) fn all() -> Vec<Analyzer> {
        let mut out = vec![Analyzer::FOLD_ONLY];
        out.extend(STEMMED.iter().map(|(_, a)| Analyzer(Some(*a))));
        out
    }

    /// The analyzer's number: 0 for folding only, else 1 + its place in [`STEMMED`].
    pub(crate) fn number(self) -> usize {
        match self.0 {
            None => 0,
            Some(a) => STEMMED
                .iter()
                .position(|(_, s)| *s == a)
                .map_or(0, |i| i + 1),
        }
    }

    /// The term of one word: lowercased, cut to [`MAX_TERM_CHARS`], stemmed in this language,
    /// folded; None for stop words and single letters. Remembered for words of at most
    /// [`MAX_MEMO_WORD_BYTES`] (see [`TERM_MEMO`]).
    pub(crate) fn term(&self, word: &str) -> Option<String> {
        if word.len() > MAX_MEMO_WORD_BYTES {
            return self.work_out(word);
        }
        TERM_MEMO.with_borrow_mut(|memo| {
            let held = &mut memo[self.number()];
            if let Some(term) = held.get(word) {
                return term.clone();
            }
            let term = self.work_out(word);
            // A short word can fold into a long term (U+FDFA is eighteen letters): those are
            // not kept, which bounds the memo's bytes.
            if term.as_ref().is_none_or(|t| t.len() <= MAX_MEMO_WORD_BYTES) {
                if held.len() >= MAX_MEMO_TERMS {
                    held.clear();
                }
                held.insert(word.to_owned(), term.clone());
            }
            term
        })
    }

    /// [`Analyzer::term`], worked out.
    pub(crate) fn work_out(&self, word: &str) -> Option<String> {
        use unicode_normalization::UnicodeNormalization as _;
        // Composed (NFC) for the stemmer, whose rules name accented letters: `a` + U+0300
        // and `à` must stem alike. (Most words are ASCII: no normalization needed.)
        let mut lower: String = if word.is_ascii() {
            word.to_ascii_lowercase()
        } else {
            word.chars().flat_map(char::to_lowercase).nfc().collect()
        };
        if let Some((i, _)) = lower.char_indices().nth(MAX_TERM_CHARS) {
            lower.truncate(i);
        }
        let folded = fold(&lower);
        if folded.is_empty()
            || (folded.chars().count() < 2 && !folded.chars().all(|c| c.is_numeric()))
        {
            return None;
        }
        if STOP_WORDS.contains(&folded.as_str()) {
            return None;
        }
        let Some(algorithm) = self.0 else {
            return Some(folded);
        };
        // The stemmers are generated code run on text from peers: a panic in one leaves the
        // word unstemmed instead of stopping the caller.
        let stemmed = intercity_protocol::doc::isolate(|| {
            rust_stemmers::Stemmer::create(algorithm)
                .stem(&lower)
                .into_owned()
        })
        .unwrap_or(lower);
        let t = fold(&stemmed);
        Some(if t.chars().count() < 2 { folded } else { t })
    }

    /// The terms of a text, in order.
    pub(crate) fn terms(self, text: &str) -> impl Iterator<Item = String> + '_ {
        words(text).filter_map(move |(_, w)| self.term(w))
    }
}

/// Words of `text` with their byte ranges: maximal runs of letters and digits (and the
/// combining marks of decomposed letters, which belong to their word).
pub(crate) fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = rest.peek() {
            if c.is_alphanumeric() {
                break;
            }
            rest.next();
        }
        let in_word =
            |c: char| c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c);
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = rest.peek() {
            if !in_word(c) {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// The terms of a text in the default language, in order.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    Analyzer::of(DEFAULT_LANGUAGE).terms(text)
}

/// One word of a query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum QueryTerm {
    /// The exact term.
    Exact(String),
    /// Any term starting with this (folded, not plural-folded).
    Prefix(String),
}

impl QueryTerm {
    pub(crate) fn matches(&self, t: &str) -> bool {
        match self {
            QueryTerm::Exact(e) => t == e,
            QueryTerm::Prefix(p) => t.starts_with(p.as_str()),
        }
    }
}

fn p_is_empty(q: &QueryTerm) -> bool {
    matches!(q, QueryTerm::Prefix(p) | QueryTerm::Exact(p) if p.is_empty())
}

/// One word of a query, as the terms it may be in the index: its term in each language looked
/// up, or a prefix; with OR, the terms of several words.
#[derive(Clone, Debug, Default, PartialEq)]
/// The second field: the words as written (lowercase, unfolded) whose typo variants stand in
/// when the word matches nothing ([`typo_terms`]); none for a prefix.
pub(crate) struct Word(pub(crate) Vec<QueryTerm>, pub(crate) Vec<String>);

/// Shortest query word (and term) typo tolerance applies to, in characters.
pub(crate) const MIN_FUZZY_CHARS: usize = 5;
/// Most stems of a word's typo variants kept ([`typo_terms`]).
const MAX_TYPO_TERMS: usize = 64;

/// The stems, in each of `analyzers`, of the words one transposition or one deletion away from
/// `w` (a typo that changes how the word stems: `cooperatvia` for `cooperativa`), without the
/// word's own terms; none for words shorter than [`MIN_FUZZY_CHARS`]. Computed only when the
/// word itself matches nothing (some 150 stemmings for a ten-letter word).
pub(crate) fn typo_terms(w: &str, analyzers: &[Analyzer], own: &[QueryTerm]) -> Vec<String> {
    let chars: Vec<char> = w.chars().collect();
    if chars.len() < MIN_FUZZY_CHARS {
        return Vec::new();
    }
    let swaps = (0..chars.len() - 1).map(|i| {
        let mut c = chars.clone();
        c.swap(i, i + 1);
        c
    });
    let deletions = (0..chars.len()).map(|i| {
        let mut c = chars.clone();
        c.remove(i);
        c
    });
    let mut out: Vec<String> = Vec::new();
    for variant in swaps.chain(deletions) {
        let variant: String = variant.into_iter().collect();
        for t in analyzers.iter().filter_map(|a| a.term(&variant)) {
            if !out.contains(&t) && !own.contains(&QueryTerm::Exact(t.clone())) {
                out.push(t);
                if out.len() >= MAX_TYPO_TERMS {
                    return out;
                }
            }
        }
    }
    out
}

/// A parsed search (docs/data-model.md, "The catalog"): every result holds each word of `all`
/// (a word joined to the next by `OR` holds either), none of `none` (`-word`), and the words of
/// each phrase (`"civic crowdfunding"`) one after the other in one field.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ParsedQuery {
    pub(crate) all: Vec<Word>,
    /// Excluded: a unit holding every word of one of these is left out (`-word` is one word,
    /// `-"a phrase"` its words).
    pub(crate) none: Vec<Vec<Word>>,
    pub(crate) phrases: Vec<Vec<Word>>,
    /// The languages the words were looked up in (their typo variants are too).
    pub(crate) analyzers: Vec<Analyzer>,
}

impl ParsedQuery {
    /// The terms a result may hold, for its snippet.
    pub(crate) fn shown(&self) -> Vec<QueryTerm> {
        self.all.iter().flat_map(|w| w.0.iter().cloned()).collect()
    }
}

/// A piece of search text.
enum Token {
    Plain(String),
    Not(String),
    Phrase(String),
    NotPhrase(String),
    Or,
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        if let Some(after) = rest.strip_prefix('-')
            && after.starts_with(['"', '“', '”', '„'])
        {
            let quoted = &after[after.chars().next().map_or(0, char::len_utf8)..];
            let end = quoted.find(['"', '“', '”']).unwrap_or(quoted.len());
            out.push(Token::NotPhrase(quoted[..end].to_string()));
            rest = quoted
                .get(end..)
                .map_or("", |r| r.trim_start_matches(['"', '“', '”']));
            continue;
        }
        if let Some(after) = rest.strip_prefix(['"', '“', '”', '„']) {
            let end = after.find(['"', '“', '”']).unwrap_or(after.len());
            out.push(Token::Phrase(after[..end].to_string()));
            rest = after
                .get(end..)
                .map_or("", |r| r.trim_start_matches(['"', '“', '”']));
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let raw = &rest[..end];
        rest = &rest[end..];
        out.push(match raw {
            "OR" => Token::Or,
            _ => match raw.strip_prefix('-') {
                Some(word) if !word.is_empty() => Token::Not(word.to_string()),
                _ => Token::Plain(raw.to_string()),
            },
        });
    }
}

/// The words of `raw` (a token): each as its terms under `analyzers`; a trailing `*` makes the
/// last one a prefix.
fn words_of(raw: &str, analyzers: &[Analyzer]) -> Vec<Word> {
    let (text, prefix) = match raw.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (raw, false),
    };
    let ws: Vec<&str> = words(text).map(|(_, w)| w).collect();
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if prefix && i + 1 == ws.len() {
            // The index holds stems: the word's stems are prefixes too (`employment*` finds
            // the stored `employ`).
            let mut alternatives = Vec::new();
            let folded = fold(w);
            for p in std::iter::once(folded).chain(analyzers.iter().filter_map(|a| a.term(w))) {
                let p = QueryTerm::Prefix(p);
                if !p_is_empty(&p) && !alternatives.contains(&p) {
                    alternatives.push(p);
                }
            }
            if !alternatives.is_empty() {
                out.push(Word(alternatives, Vec::new()));
            }
            continue;
        }
        let mut alternatives: Vec<QueryTerm> = Vec::new();
        for a in analyzers {
            if let Some(t) = a.term(w) {
                let t = QueryTerm::Exact(t);
                if !alternatives.contains(&t) {
                    alternatives.push(t);
                }
            }
        }
        if !alternatives.is_empty() {
            out.push(Word(alternatives, vec![w.to_string()]));
        }
    }
    out
}

/// Parses search text: words, `OR` between two words, `NOT word` or `-word` to exclude,
/// `"a phrase"`, and `word*` for a prefix. Each word is looked up in `languages` (ISO 639 codes; none: every
/// language this program analyzes, so that a query in any of them finds records in it).
pub(crate) fn parse_query(text: &str, languages: &[String]) -> Result<ParsedQuery, QueryError> {
    let n = text.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong(n));
    }
    let analyzers: Vec<Analyzer> = if languages.is_empty() {
        Analyzer::all()
    } else {
        languages.iter().map(|l| Analyzer::of(l)).collect()
    };
    let mut q = ParsedQuery::default();
    let mut or = false;
    let mut not = false;
    // Whether the last word or phrase read was a phrase of several words (OR joins words
    // only); exclusions in between do not count.
    let mut phrase_last = false;
    for token in tokens(text) {
        // `NOT word` is `-word` (a shell or a command line takes `-word` for an option).
        let token = match token {
            Token::Plain(raw) if std::mem::take(&mut not) => Token::Not(raw),
            Token::Phrase(raw) if std::mem::take(&mut not) => Token::NotPhrase(raw),
            Token::Not(raw) if std::mem::take(&mut not) => Token::Not(raw),
            Token::Plain(raw) if raw == "NOT" => {
                not = true;
                continue;
            }
            other => other,
        };
        match token {
            Token::Or if phrase_last => return Err(QueryError::OrPhrase(text.to_string())),
            Token::Or => or = !q.all.is_empty(),
            Token::Not(raw) => {
                q.none
                    .extend(words_of(&raw, &analyzers).into_iter().map(|w| vec![w]));
                or = false;
            }
            Token::NotPhrase(raw) => {
                let words = words_of(&raw, &analyzers);
                if !words.is_empty() {
                    q.none.push(words);
                }
                or = false;
            }
            Token::Phrase(raw) => {
                let phrase = words_of(&raw, &analyzers);
                if phrase.len() > 1 {
                    if or {
                        return Err(QueryError::OrPhrase(text.to_string()));
                    }
                    q.all.extend(phrase.iter().cloned());
                    q.phrases.push(phrase);
                    phrase_last = true;
                } else {
                    phrase_last = false;
                    // A quoted single word is that word (OR may join it).
                    let mut ws = phrase.into_iter();
                    if or && let (Some(last), Some(first)) = (q.all.last_mut(), ws.next()) {
                        last.0.extend(first.0);
                        last.1.extend(first.1);
                    }
                    q.all.extend(ws);
                }
                or = false;
            }
            Token::Plain(raw) => {
                phrase_last = false;
                let mut ws = words_of(&raw, &analyzers).into_iter();
                if or && let (Some(last), Some(first)) = (q.all.last_mut(), ws.next()) {
                    last.0.extend(first.0);
                    last.1.extend(first.1);
                }
                q.all.extend(ws);
                or = false;
            }
        }
    }
    if q.all.is_empty() {
        return Err(if q.none.is_empty() {
            QueryError::NoTerms(text.to_string())
        } else {
            QueryError::OnlyExcluded(text.to_string())
        });
    }
    q.analyzers = analyzers;
    Ok(q)
}

/// Whether `terms` (a field's, in order) holds the words of `phrase` one after the other.
pub(crate) fn holds_phrase(terms: &[String], phrase: &[Word]) -> bool {
    !phrase.is_empty()
        && terms.windows(phrase.len()).any(|run| {
            run.iter()
                .zip(phrase)
                .all(|(t, w)| w.0.iter().any(|q| q.matches(t)))
        })
}

/// An excerpt of `text` around the first word matching one of `query` (or its beginning),
/// about `width` characters, with the byte ranges of every matching word in it.
pub(crate) fn snippet(
    text: &str,
    query: &[QueryTerm],
    analyzer: Analyzer,
    width: usize,
) -> (String, Vec<(usize, usize)>) {
    let is_match = |w: &str| {
        analyzer
            .term(w)
            .is_some_and(|t| query.iter().any(|q| q.matches(&t)))
            || query
                .iter()
                .any(|q| matches!(q, QueryTerm::Prefix(p) if fold(w).starts_with(p.as_str())))
    };
    let first = words(text).find(|(_, w)| is_match(w)).map_or(0, |(i, _)| i);
    // Start a few words before the match, at a char boundary.
    let lead = width / 4;
    let start = text[..first]
        .char_indices()
        .rev()
        .take(lead)
        .last()
        .map_or(first, |(i, _)| i);
    let mut start = start;
    if start > 0
        && let Some((sp, ws)) = text[start..first]
            .char_indices()
            .find(|(_, c)| c.is_whitespace())
    {
        // Whitespace may be longer than a byte (a non-breaking space).
        start += sp + ws.len_utf8();
    }
    let end = text[start..]
        .char_indices()
        .nth(width)
        .map_or(text.len(), |(i, _)| start + i);
    let mut end = end;
    if end < text.len()
        && let Some(sp) = text[start..end].rfind(char::is_whitespace)
        && start + sp > first
    {
        end = start + sp;
    }
    let prefix = if start > 0 { "…" } else { "" };
    let suffix = if end < text.len() { "…" } else { "" };
    let body = text[start..end].replace(['\n', '\t'], " ");
    let mut highlights = Vec::new();
    for (i, w) in words(&body) {
        if is_match(w) {
            highlights.push((prefix.len() + i, prefix.len() + i + w.len()));
        }
    }
    (format!("{prefix}{body}{suffix}"), highlights)
}
