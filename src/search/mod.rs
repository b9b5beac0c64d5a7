//! Full-text search over repositories (tantivy); a leaf that imports nothing of the app.
//! One document per repository: its name and path components, owner name and handle, README and
//! description, annotation values, tags and platforms, with its star count and last push as fast
//! fields for ranking.
//!
//! Queries: free words must all match somewhere (a word matches a name component exactly, as a
//! prefix, or within one typo for words of four letters or more; the owner; a tag or platform;
//! or the text, stemmed); `owner:`, `platform:` and `tag:` filter. Relevance (BM25 and boosts
//! per field) is multiplied by a small boost for stars and for recent pushes.
//!
//! The index is derived: it can be deleted and rebuilt from the registry index at any time
//! (`atcr index rebuild` does, and so does a node that finds it missing, stale or of another
//! schema version).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    Language, LowerCaser, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, TokenStream,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Bump when the schema or what goes into a document changes: older indexes are rebuilt.
const VERSION: u64 = 1;
/// The writer's memory budget (tantivy needs ≥ 15 MB per indexing thread).
const WRITER_BYTES: usize = 24 << 20;
/// Decompressed document-store blocks kept per segment (tantivy's default is 100).
const DOC_BLOCKS: usize = 16;
/// Results per page.
pub const PAGE_SIZE: usize = 20;
/// Longest query read (longer input is cut).
const MAX_QUERY: usize = 512;
/// Most free words a query uses.
const MAX_WORDS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Directory(String),
}

/// What is indexed of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoDoc {
    /// The registry index key (`<did>/<path>`).
    pub key: String,
    /// The name users write (`alice/tools/app`).
    pub name: String,
    pub owner: String,
    pub handle: Option<String>,
    /// A one-line description (annotation or the README's first paragraph).
    pub description: String,
    pub readme: String,
    /// Annotation values worth finding: title, description, vendor, licenses, source.
    pub annotations: Vec<String>,
    pub tags: Vec<String>,
    pub platforms: Vec<String>,
    pub stars: u64,
    /// Last push, unix seconds.
    pub pushed: u64,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub key: String,
    pub name: String,
    pub description: String,
    /// HTML with the matched words in `<b>`; everything else escaped.
    pub snippet_html: String,
    pub stars: u64,
    pub pushed: u64,
    pub score: f32,
}

/// A page of results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Results {
    pub total: usize,
    pub hits: Vec<Hit>,
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    name: Field,
    people: Field,
    owner: Field,
    text: Field,
    description: Field,
    tag: Field,
    platform: Field,
    stars: Field,
    pushed: Field,
}

/// The search index.
pub struct Search {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// The writer, opened by the first write and kept while writes keep coming (closed by
    /// [`Search::close_writer`] when they stop, so an idle node holds none). tantivy starts a
    /// fresh indexing thread at every commit; with one writer that thread is handed the malloc
    /// arena its predecessor just left, where a writer per batch (and its thread pools) spread
    /// the ≈13 MiB each commit allocates over arena after arena, and a node under steady
    /// pushes grew to 200–300 MiB (docs/performance.md, "Memory: the allocator").
    writer: Mutex<Option<IndexWriter>>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        key: b.add_text_field("key", STRING | STORED),
        name: b.add_text_field("name", words("atcr_name") | STORED),
        people: b.add_text_field("people", words("atcr_name")),
        owner: b.add_text_field("owner", STRING),
        text: b.add_text_field("text", words("atcr_text") | STORED),
        description: b.add_text_field("description", TextOptions::default() | STORED),
        tag: b.add_text_field("tag", STRING),
        platform: b.add_text_field("platform", STRING),
        stars: b.add_u64_field("stars", FAST | STORED | INDEXED),
        pushed: b.add_u64_field("pushed", FAST | STORED),
    };
    (b.build(), fields)
}

/// Names split into their parts (`my-app_2` → `my`, `app`, `2`), lower-cased.
fn name_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .build()
}

/// Prose: lower-cased, English stop words out, stemmed.
fn text_analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .dynamic();
    let builder = match StopWordFilter::new(Language::English) {
        Some(stop) => builder.filter_dynamic(stop),
        None => builder,
    };
    builder
        .filter_dynamic(Stemmer::new(Language::English))
        .build()
}

fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

impl Search {
    /// Opens the index in `dir`, creating it (empty) when missing or of another version.
    /// Returns whether it is fresh (empty: the caller fills it).
    pub fn open(dir: &Path) -> Result<(Search, bool), SearchError> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::Directory(e.to_string()))?;
        let (schema, fields) = schema();
        let open = || -> Result<Index, SearchError> {
            let directory =
                MmapDirectory::open(dir).map_err(|e| SearchError::Directory(e.to_string()))?;
            Ok(Index::open_or_create(directory, schema.clone())?)
        };
        let afresh = || -> Result<Index, SearchError> {
            std::fs::remove_dir_all(dir).map_err(|e| SearchError::Directory(e.to_string()))?;
            std::fs::create_dir_all(dir).map_err(|e| SearchError::Directory(e.to_string()))?;
            open()
        };
        // It is derived: another version or an unreadable one is started again.
        let index = match open() {
            Ok(index) if payload(&index).and_then(|p| p["version"].as_u64()) == Some(VERSION) => {
                return Search::with(index, fields).map(|s| (s, false));
            }
            Ok(index) if index.searchable_segment_ids()?.is_empty() => index,
            Ok(_) => afresh()?,
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "the search index cannot be opened: removed, rebuilding it from the registry index"
                );
                afresh()?
            }
        };
        Search::with(index, fields).map(|s| (s, true))
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Search, SearchError> {
        let (schema, fields) = schema();
        Search::with(Index::create_in_ram(schema), fields)
    }

    fn with(index: Index, fields: Fields) -> Result<Search, SearchError> {
        index.tokenizers().register("atcr_name", name_analyzer());
        index.tokenizers().register("atcr_text", text_analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            // A page shows 20 hits: a small decompressed-block cache is plenty.
            .doc_store_cache_num_blocks(DOC_BLOCKS)
            .try_into()?;
        Ok(Search {
            index,
            reader,
            fields,
            writer: Mutex::new(None),
        })
    }

    /// The registry index position this index reflects (`None`: unknown, rebuild it).
    #[must_use]
    pub fn cursor(&self) -> Option<u64> {
        let payload = payload(&self.index)?;
        (payload["version"].as_u64() == Some(VERSION))
            .then(|| payload["cursor"].as_u64())
            .flatten()
    }

    /// Number of repositories indexed.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether nothing is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the documents of `removed` keys and of `docs`, then commits with the registry
    /// index position `cursor`. With `clear`, everything else goes too (a rebuild).
    pub fn update(
        &self,
        docs: &[RepoDoc],
        removed: &[String],
        cursor: u64,
        clear: bool,
    ) -> Result<(), SearchError> {
        let mut slot = self.writer_slot();
        let mut writer = self.take_writer(&mut slot)?;
        // A writer that failed is dropped with whatever it holds uncommitted; the next write
        // opens another.
        self.write_batch(&mut writer, docs, removed, cursor, clear)?;
        *slot = Some(writer);
        Ok(())
    }

    fn write_batch(
        &self,
        writer: &mut IndexWriter,
        docs: &[RepoDoc],
        removed: &[String],
        cursor: u64,
        clear: bool,
    ) -> Result<(), SearchError> {
        if clear {
            writer.delete_all_documents()?;
        }
        let f = self.fields;
        for key in removed.iter().chain(docs.iter().map(|d| &d.key)) {
            writer.delete_term(Term::from_field_text(f.key, key));
        }
        for d in docs {
            writer.add_document(self.document(d))?;
        }
        self.commit(writer, cursor)
    }

    /// Closes the writer, once its merges are done; the next write opens another.
    pub fn close_writer(&self) -> Result<(), SearchError> {
        let mut slot = self.writer_slot();
        match slot.take() {
            Some(writer) => Ok(writer.wait_merging_threads()?),
            None => Ok(()),
        }
    }

    fn writer_slot(&self) -> MutexGuard<'_, Option<IndexWriter>> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open writer, or a new one.
    fn take_writer(&self, slot: &mut Option<IndexWriter>) -> Result<IndexWriter, SearchError> {
        match slot.take() {
            Some(writer) => Ok(writer),
            None => Ok(self.index.writer_with_num_threads(1, WRITER_BYTES)?),
        }
    }

    fn commit(&self, writer: &mut IndexWriter, cursor: u64) -> Result<(), SearchError> {
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&serde_json::json!({"version": VERSION, "cursor": cursor}).to_string());
        commit.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Starts replacing the whole index (a rebuild): documents added to the returned writer
    /// become visible, and everything else goes, at [`Bulk::finish`].
    pub fn bulk(&self) -> Result<Bulk<'_>, SearchError> {
        let mut slot = self.writer_slot();
        let writer = self.take_writer(&mut slot)?;
        writer.delete_all_documents()?;
        Ok(Bulk {
            search: self,
            writer,
            slot,
        })
    }

    fn document(&self, d: &RepoDoc) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, &d.key);
        doc.add_text(f.name, &d.name);
        doc.add_text(f.people, &d.owner);
        doc.add_text(f.owner, d.owner.to_lowercase());
        if let Some(h) = &d.handle {
            doc.add_text(f.people, h);
            doc.add_text(f.owner, h.to_lowercase());
        }
        doc.add_text(f.description, &d.description);
        let mut text = d.description.clone();
        for part in d.annotations.iter().chain([&d.readme]) {
            if !part.is_empty() && !text.contains(part.as_str()) {
                text.push('\n');
                text.push_str(part);
            }
        }
        doc.add_text(f.text, &text);
        for t in &d.tags {
            doc.add_text(f.tag, t.to_lowercase());
        }
        for p in &d.platforms {
            let p = p.to_lowercase();
            // `linux/arm64/v8` is found as itself, as `linux/arm64`, `arm64` and `linux`.
            let parts: Vec<&str> = p.split('/').collect();
            for n in 1..=parts.len() {
                doc.add_text(f.platform, parts[..n].join("/"));
            }
            for part in parts.iter().skip(1) {
                doc.add_text(f.platform, *part);
            }
        }
        doc.add_u64(f.stars, d.stars);
        doc.add_u64(f.pushed, d.pushed);
        doc
    }

    /// The query for `input` (see the module documentation); `None` when it asks nothing.
    fn query(&self, input: &str) -> Option<Box<dyn Query>> {
        let f = self.fields;
        let mut input = input.trim();
        if input.len() > MAX_QUERY {
            let mut end = MAX_QUERY;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            input = &input[..end];
        }
        let (mut name_an, mut text_an) = (name_analyzer(), text_analyzer());
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut words = 0;
        for word in input.split_whitespace() {
            let filter = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
                let term = Term::from_field_text(field, &value.to_lowercase());
                (
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                )
            };
            match word.split_once(':') {
                Some(("owner", v)) if !v.is_empty() => must.push(filter(f.owner, v)),
                Some(("platform", v)) if !v.is_empty() => must.push(filter(f.platform, v)),
                Some(("tag", v)) if !v.is_empty() => must.push(filter(f.tag, v)),
                _ => {
                    for part in analyze(&mut name_an, word) {
                        if words >= MAX_WORDS {
                            break;
                        }
                        words += 1;
                        let stems = analyze(&mut text_an, &part);
                        must.push((Occur::Must, self.word_query(&part, &stems, word)));
                    }
                }
            }
        }
        if must.is_empty() {
            return None;
        }
        if must.iter().all(|(o, _)| *o == Occur::Must) && words == 0 {
            // Filters only: everything that passes them.
            must.push((Occur::Should, Box::new(AllQuery)));
        }
        Some(Box::new(BooleanQuery::new(must)))
    }

    /// One free word: a name part (exact, prefix, one typo), an owner, a tag or platform
    /// (the word as typed), or the text (stemmed).
    fn word_query(&self, part: &str, stems: &[String], typed: &str) -> Box<dyn Query> {
        let f = self.fields;
        let boosted = |q: Box<dyn Query>, by: f32| -> (Occur, Box<dyn Query>) {
            (Occur::Should, Box::new(BoostQuery::new(q, by)))
        };
        let term = |field: Field, text: &str| Term::from_field_text(field, text);
        let exact = |field: Field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                term(field, text),
                IndexRecordOption::WithFreqs,
            ))
        };
        let chars = part.chars().count();
        let mut should = vec![
            boosted(exact(f.name, part), 6.0),
            boosted(exact(f.people, part), 3.0),
            boosted(exact(f.tag, &typed.to_lowercase()), 2.0),
            boosted(exact(f.platform, &typed.to_lowercase()), 2.0),
        ];
        if chars >= 2 {
            should.push(boosted(
                Box::new(FuzzyTermQuery::new_prefix(term(f.name, part), 0, true)),
                3.0,
            ));
        }
        if chars >= 4 {
            should.push(boosted(
                Box::new(FuzzyTermQuery::new_prefix(term(f.name, part), 1, true)),
                1.5,
            ));
        }
        for stem in stems {
            should.push(boosted(exact(f.text, stem), 1.0));
            if stem.chars().count() >= 5 {
                should.push(boosted(
                    Box::new(FuzzyTermQuery::new(term(f.text, stem), 1, true)),
                    0.3,
                ));
            }
        }
        Box::new(BooleanQuery::new(should))
    }

    /// Results `offset..offset + PAGE_SIZE` for `input`, best first. `now` (unix seconds)
    /// dates the recency boost.
    pub fn search(&self, input: &str, offset: usize, now: u64) -> Result<Results, SearchError> {
        let Some(query) = self.query(input) else {
            return Ok(Results::default());
        };
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(PAGE_SIZE)
            .and_offset(offset)
            .tweak_score(move |segment: &tantivy::SegmentReader| {
                let fast = segment.fast_fields();
                let stars = fast.u64("stars").ok().map(|c| c.first_or_default_col(0));
                let pushed = fast.u64("pushed").ok().map(|c| c.first_or_default_col(0));
                move |doc: tantivy::DocId, score: tantivy::Score| {
                    let stars = stars.as_ref().map_or(0, |c| c.get_val(doc));
                    let pushed = pushed.as_ref().map_or(0, |c| c.get_val(doc));
                    score * boost(stars, pushed, now)
                }
            });
        let (top, total) = searcher.search(&query, &(top, Count))?;
        let mut snippets = SnippetGenerator::create(&searcher, &*query, self.fields.text)?;
        snippets.set_max_num_chars(200);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            hits.push(self.hit(&searcher, address, score, &snippets)?);
        }
        Ok(Results { total, hits })
    }

    fn hit(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
        score: f32,
        snippets: &SnippetGenerator,
    ) -> Result<Hit, SearchError> {
        let f = self.fields;
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let number = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        // The description is shown on its own: the snippet comes from the rest of the text
        // (annotations, the README), which may repeat it.
        let description = text(f.description);
        let rest = text(f.text);
        let rest = if description.is_empty() {
            rest
        } else {
            rest.replace(&description, " ")
        };
        let snippet = snippets.snippet(&rest);
        Ok(Hit {
            key: text(f.key),
            name: text(f.name),
            description,
            snippet_html: if snippet.highlighted().is_empty() {
                String::new()
            } else {
                snippet.to_html()
            },
            stars: number(f.stars),
            pushed: number(f.pushed),
            score,
        })
    }
}

/// A rebuild in progress: see [`Search::bulk`].
pub struct Bulk<'a> {
    search: &'a Search,
    /// Taken out of the slot, which stays locked: a rebuild dropped before [`Bulk::finish`]
    /// drops the writer and everything it was given.
    writer: IndexWriter,
    slot: MutexGuard<'a, Option<IndexWriter>>,
}

impl Bulk<'_> {
    pub fn add(&mut self, doc: &RepoDoc) -> Result<(), SearchError> {
        self.writer.add_document(self.search.document(doc))?;
        Ok(())
    }

    /// Commits, recording the registry index position `cursor`.
    pub fn finish(mut self, cursor: u64) -> Result<(), SearchError> {
        self.search.commit(&mut self.writer, cursor)?;
        *self.slot = Some(self.writer);
        Ok(())
    }
}

/// The ranking boost of a repository with `stars` stars last pushed at `pushed`: up to ≈1.5×
/// for many stars (logarithmic), up to 1.2× for a push within the last weeks.
fn boost(stars: u64, pushed: u64, now: u64) -> f32 {
    #[allow(clippy::cast_precision_loss)]
    let stars = (1.0 + stars as f32).ln() * 0.1;
    #[allow(clippy::cast_precision_loss)]
    let age_days = now.saturating_sub(pushed) as f32 / 86_400.0;
    let recent = 0.2 * (-age_days / 30.0).exp();
    (1.0 + stars.min(0.5)) * (1.0 + recent)
}

/// The JSON the last commit recorded: `{version, cursor}`.
fn payload(index: &Index) -> Option<serde_json::Value> {
    let metas = index.load_metas().ok()?;
    serde_json::from_str(metas.payload.as_deref()?).ok()
}

#[cfg(test)]
mod tests;
