//! The catalog benchmarks' workload: generated practices and projects (in JSON, as `import`
//! reads them) whose words follow Zipf's law, so that one word is in nearly every record.

/// The topical words; each record has two of them as themes.
pub const WORDS: &[&str] = &[
    "youth",
    "employment",
    "inclusion",
    "housing",
    "mobility",
    "energy",
    "heritage",
    "culture",
    "innovation",
    "digital",
    "skills",
    "training",
    "migrants",
    "elderly",
    "care",
    "health",
    "school",
    "university",
    "startup",
    "incubator",
    "participation",
    "budget",
    "green",
    "roofs",
    "bicycle",
    "transport",
    "circular",
    "economy",
    "waste",
    "water",
    "climate",
    "adaptation",
    "neighbourhood",
    "regeneration",
    "library",
    "makerspace",
    "festival",
    "tourism",
    "food",
    "market",
    "procurement",
    "open",
    "data",
    "platform",
    "volunteers",
    "sport",
    "safety",
    "lighting",
    "parks",
    "trees",
];
/// The cities records are about.
pub const CITIES: &[&str] = &[
    "Milan",
    "Brno",
    "Warsaw",
    "Utrecht",
    "Porto",
    "Riga",
    "Nantes",
    "Madrid",
    "Katowice",
    "Bialystok",
    "Ghent",
    "Lyon",
    "Turin",
    "Gdansk",
    "Tartu",
    "Aarhus",
    "Bilbao",
    "Graz",
];
/// Partner sectors.
pub const SECTORS: &[&str] = &["private", "ngo", "university", "public"];

/// The generic vocabulary: pseudo-words drawn with Zipf's law (rank r has weight 1/r), as in
/// real text; the topical `WORDS` come only with the record's own two topics.
pub struct Vocabulary {
    /// The words, most common first.
    pub words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    /// `n` pseudo-words.
    pub fn new(n: usize) -> Vocabulary {
        const SYL: &[&str] = &[
            "ka", "lo", "ven", "tri", "mar", "so", "del", "pu", "ran", "gi", "on", "te", "bra",
            "qui", "mo", "sel", "ur", "fa", "nel", "di",
        ];
        let words = (0..n)
            .map(|i| {
                let (a, b, c) = (
                    i % SYL.len(),
                    i / SYL.len() % SYL.len(),
                    i / 400 % SYL.len(),
                );
                format!("{}{}{}", SYL[a], SYL[b], SYL[c])
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    /// One word, drawn by Zipf's law.
    pub fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next_u64() % 1_000_000) as f64 / 1_000_000.0 * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// One of `from`.
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next_u64() % from.len() as u64) as usize]
    }
}

/// `n` words of text about `topics`: mostly generic words, each topic word now and then.
fn text(rng: &mut Rng, vocab: &Vocabulary, topics: &[&str], n: usize) -> String {
    (0..n)
        .map(|_| {
            if rng.next_u64().is_multiple_of(12) {
                rng.pick(topics).to_string()
            } else {
                vocab.pick(rng).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Record `i`: every third a project, the others practices in English.
pub fn record(rng: &mut Rng, vocab: &Vocabulary, i: usize) -> serde_json::Value {
    let year = 2000 + rng.next_u64() % 26;
    let start = format!(
        "{year}-{:02}-{:02}",
        1 + rng.next_u64() % 12,
        1 + rng.next_u64() % 28
    );
    let end = format!("{}-12-31", year + rng.next_u64() % 4);
    let topics = [rng.pick(WORDS), rng.pick(WORDS)];
    let partners: Vec<serde_json::Value> = (0..rng.next_u64() % 4)
        .map(|k| serde_json::json!({"name": format!("Partner {i}-{k}"), "sector": rng.pick(SECTORS)}))
        .collect();
    let city = rng.pick(CITIES);
    let title = format!(
        "{} {} {} in {city}",
        vocab.pick(rng),
        topics[0],
        vocab.pick(rng)
    );
    if i.is_multiple_of(3) {
        let status = ["planned", "running", "completed"][(rng.next_u64() % 3) as usize];
        serde_json::json!({
            "kind": "project", "name": format!("{title} ({i})"),
            "description": text(rng, vocab, &topics, 60), "lead_city": city,
            "status": status, "start": start, "end": end, "themes": topics, "partners": partners,
        })
    } else {
        serde_json::json!({
            "kind": "practice", "title": title,
            "summary": text(rng, vocab, &topics, 20), "body": text(rng, vocab, &topics, 80),
            "city": city, "language": "en", "start": start, "themes": topics, "partners": partners,
        })
    }
}
