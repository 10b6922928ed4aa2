//! Text analysis: fields and their weights, folding words into terms, parsing queries, snippets.

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

pub(crate) const STOP_WORDS: &[&str] = &[
    "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its",
    "of", "on", "or", "that", "the", "their", "this", "to", "was", "were", "with",
];

pub(crate) fn fold_char(c: char, out: &mut String) {
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ġ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ł' | 'ľ' | 'ĺ' | 'ļ' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ŕ' | 'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ť' | 'ţ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ů' | 'ū' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(folded);
}

/// Lowercases and folds the diacritics of one word (no plural folding).
pub(crate) fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars().flat_map(char::to_lowercase) {
        fold_char(c, &mut out);
    }
    out
}

/// The term of one word: folded, cut to [`MAX_TERM_CHARS`], English plural folded; None for
/// stop words and single letters.
pub(crate) fn term(word: &str) -> Option<String> {
    let mut t = fold(word);
    if let Some((i, _)) = t.char_indices().nth(MAX_TERM_CHARS) {
        t.truncate(i);
    }
    if t.chars().count() < 2 && !t.chars().all(|c| c.is_numeric()) {
        return None;
    }
    if STOP_WORDS.contains(&t.as_str()) {
        return None;
    }
    if t.len() > 4 && t.ends_with("ies") {
        t.truncate(t.len() - 3);
        t.push('y');
    } else if t.len() > 3
        && t.ends_with('s')
        && !t.ends_with("ss")
        && !t.ends_with("us")
        && !t.ends_with("is")
    {
        t.pop();
    }
    Some(t)
}

/// Words of `text` with their byte ranges: maximal runs of letters and digits.
pub(crate) fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = rest.peek() {
            if c.is_alphanumeric() {
                break;
            }
            rest.next();
        }
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = rest.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// The terms of a text, in order (what the index holds and a query looks for).
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    words(text).filter_map(|(_, w)| term(w))
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

pub(crate) fn parse_query(text: &str) -> Result<Vec<QueryTerm>, QueryError> {
    let n = text.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong(n));
    }
    let mut out = Vec::new();
    for raw in text.split_whitespace() {
        if let Some(stem) = raw.strip_suffix('*') {
            let ws: Vec<_> = words(stem).map(|(_, w)| fold(w)).collect();
            let last = ws.len().saturating_sub(1);
            for (i, w) in ws.into_iter().enumerate() {
                if i == last && !w.is_empty() {
                    out.push(QueryTerm::Prefix(w));
                } else if let Some(t) = term(&w) {
                    out.push(QueryTerm::Exact(t));
                }
            }
        } else {
            out.extend(terms(raw).map(QueryTerm::Exact));
        }
    }
    out.dedup();
    if out.is_empty() {
        return Err(QueryError::NoTerms(text.to_string()));
    }
    Ok(out)
}

/// An excerpt of `text` around the first word matching one of `query` (or its beginning),
/// about `width` characters, with the byte ranges of every matching word in it.
pub(crate) fn snippet(
    text: &str,
    query: &[QueryTerm],
    width: usize,
) -> (String, Vec<(usize, usize)>) {
    let is_match = |w: &str| {
        term(w).is_some_and(|t| query.iter().any(|q| q.matches(&t)))
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
        && let Some(sp) = text[start..first].find(char::is_whitespace)
    {
        start += sp + 1;
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
