//! Benchmarks of the atproto data layer (`cargo bench --bench atproto`).
//!
//! A plain harness (no extra dependency): each figure is the median of several runs. The work is
//! single-threaded, so wall time approximates CPU time on an idle core; the commit benchmark
//! also reports process CPU time from `/proc/self/stat`. Peak memory of the export is the growth
//! of `VmHWM` after resetting it through `/proc/self/clear_refs`. Pass a word to run only the
//! benchmarks whose name contains it (`insert`, `recompute`, `commit`, `sign`, `export`).

// Report arithmetic: counts far below 2^52 become f64 exactly; `main` is a flat script.
#![allow(
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

use std::io::Write;
use std::time::{Duration, Instant};

use atcr::atproto::blockstore::{BlockStore, MemoryBlockStore};
use atcr::atproto::car::export_repo;
use atcr::atproto::commit::{UnsignedCommit, verify_repo};
use atcr::atproto::crypto::{Algorithm, Keypair};
use atcr::atproto::mst::Mst;
use atcr::atproto::{Cid, Tid, Value};
use bytes::Bytes;

const N: usize = 100_000;
const RUNS: usize = 5;

fn record(i: usize) -> (String, Value) {
    let digest = format!("sha256:{i:064x}");
    let json = serde_json::json!({
        "$type": "io.atcr.tag",
        "repository": format!("repo{}", i / 10),
        "tag": format!("v{i}"),
        "manifestDigest": digest,
        "updatedAt": "2026-01-01T00:00:00.000Z",
    });
    (
        format!(
            "io.atcr.tag/{}",
            Tid::from_parts(1_700_000_000_000_000 + i as u64 * 1000, 7)
        ),
        Value::from_json(&json).unwrap(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

fn cpu_time() -> Duration {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let records: Vec<(String, Value)> = (0..N).map(record).collect();
    let blocks: Vec<(String, Cid, Bytes)> = records
        .iter()
        .map(|(k, v)| {
            let b = v.to_cbor();
            (k.clone(), Cid::for_cbor(&b), Bytes::from(b))
        })
        .collect();
    let store = MemoryBlockStore::new();
    for (_, cid, b) in &blocks {
        store.put(*cid, b.clone()).unwrap();
    }
    println!("## ATProto data layer benchmarks ({N} records, median of {RUNS} runs)\n");

    if run("insert") {
        let mut one = Vec::new();
        let mut batch = Vec::new();
        for _ in 0..RUNS {
            let (d, root) = time(|| {
                let mut mst = Mst::new();
                for (k, cid, _) in &blocks {
                    mst.insert(&store, k, *cid).unwrap();
                }
                mst.root_cid()
            });
            one.push(d);
            let (d, root2) = time(|| {
                Mst::from_entries(blocks.iter().map(|(k, c, _)| (k.clone(), *c)))
                    .unwrap()
                    .root_cid()
            });
            assert_eq!(root, root2);
            batch.push(d);
        }
        let one = median(one);
        let batch = median(batch);
        println!(
            "| MST insert {N} one by one (+ root CID) | {:.0} ms | {:.2} µs/record |",
            ms(one),
            us(one) / N as f64
        );
        println!(
            "| MST build {N} in one batch (+ root CID) | {:.0} ms | {:.2} µs/record |",
            ms(batch),
            us(batch) / N as f64
        );
    }

    // A persisted 100k-record repo for the remaining benchmarks.
    let key = Keypair::from_bytes(Algorithm::K256, &[7u8; 32]).unwrap();
    let did: atcr::atproto::Did = "did:web:bench.example.com".parse().unwrap();
    let mut mst = Mst::from_entries(blocks.iter().map(|(k, c, _)| (k.clone(), *c))).unwrap();
    store.put_many(mst.take_new_blocks()).unwrap();
    let commit = UnsignedCommit::new(did.clone(), mst.root_cid(), Tid::now()).sign(&key);
    let mut head = commit.cid();
    store.put(head, Bytes::from(commit.to_cbor())).unwrap();

    if run("recompute") {
        let mut v = Vec::new();
        for i in 0..200 {
            let mut m = mst.clone();
            let cid = Cid::for_cbor(&[i as u8, 1]);
            let (d, _) = time(|| {
                m.insert(&store, &blocks[(i * 491) % N].0, cid).unwrap();
                m.root_cid()
            });
            v.push(d);
        }
        let d = median(v);
        println!(
            "| root recompute after a single-record change, warm tree | {:.1} µs | |",
            us(d)
        );
        let mut v = Vec::new();
        for i in 0..200 {
            let cid = Cid::for_cbor(&[i as u8, 2]);
            let (d, _) = time(|| {
                let mut m = Mst::load(&store, mst.root_cid()).unwrap();
                m.insert(&store, &blocks[(i * 491) % N].0, cid).unwrap();
                m.root_cid()
            });
            v.push(d);
        }
        let d = median(v);
        println!(
            "| root recompute after a single-record change, tree loaded from the store | {:.1} µs | |",
            us(d)
        );
    }

    if run("commit") {
        // A full single-record commit: encode the record, update the MST from the store,
        // collect and persist new blocks, sign and persist the commit.
        let commits = 2000;
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let mut per = Vec::with_capacity(commits);
        for i in 0..commits {
            let t = Instant::now();
            let (k, v) = record(N + i);
            let bytes = v.to_cbor();
            let cid = Cid::for_cbor(&bytes);
            store.put(cid, Bytes::from(bytes)).unwrap();
            let prev =
                atcr::atproto::Commit::from_cbor(&store.get(&head).unwrap().unwrap()).unwrap();
            let mut m = Mst::load(&store, prev.unsigned.data).unwrap();
            m.insert(&store, &k, cid).unwrap();
            let new_blocks = m.take_new_blocks();
            store.put_many(new_blocks).unwrap();
            let c = UnsignedCommit::new(did.clone(), m.root_cid(), Tid::now()).sign(&key);
            head = c.cid();
            store.put(head, Bytes::from(c.to_cbor())).unwrap();
            per.push(t.elapsed());
        }
        let wall = t0.elapsed();
        let cpu = cpu_time().saturating_sub(cpu0);
        println!(
            "| single-record commit on a {N}-record repo (load from store, insert, persist, sign) | {:.0} µs median | {:.0} µs CPU mean over {commits} |",
            us(median(per)),
            us(cpu) / f64::from(commits as u32)
        );
        let _ = wall;
    }

    if run("sign") {
        for alg in [Algorithm::K256, Algorithm::P256] {
            let k = Keypair::from_bytes(alg, &[9u8; 32]).unwrap();
            let pk = k.public_key();
            let u = UnsignedCommit::new(did.clone(), mst.root_cid(), Tid::now());
            let n = 2000;
            let (ds, sigs) = time(|| (0..n).map(|_| u.clone().sign(&k)).collect::<Vec<_>>());
            let (dv, ()) = time(|| sigs.iter().for_each(|c| c.verify(&pk).unwrap()));
            println!(
                "| commit sign / verify, {alg:?} | {:.0} signs/s | {:.0} verifies/s |",
                f64::from(n) / ds.as_secs_f64(),
                f64::from(n) / dv.as_secs_f64()
            );
        }
    }

    if run("export") {
        let (d, verified) = time(|| verify_repo(&store, head, &key.public_key()).unwrap());
        println!(
            "| full-repo verification ({} records, {} nodes: every hash, the structure, the signature) | {:.0} ms | |",
            verified.records,
            verified.nodes,
            ms(d)
        );
        let block_count = (verified.records + verified.nodes + 1) as f64;
        let mut v = Vec::new();
        let mut size = 0usize;
        let mut peak_delta = 0u64;
        for _ in 0..RUNS {
            reset_peak_rss();
            let before = status_kb("VmRSS:");
            let (d, out) = time(|| export_repo(&store, head, CountingSink(0)).unwrap());
            peak_delta = peak_delta.max(status_kb("VmHWM:").saturating_sub(before));
            size = out.0;
            v.push(d);
        }
        let d = median(v);
        // Control: the same export into a Vec (the whole CAR in memory) shows what the
        // measurement sees when memory does grow.
        reset_peak_rss();
        let before = status_kb("VmRSS:");
        let buffered = export_repo(&store, head, Vec::new()).unwrap();
        let buffered_delta = status_kb("VmHWM:").saturating_sub(before);
        assert_eq!(buffered.len(), size);
        drop(buffered);
        println!(
            "| CAR export of the {}-record repo ({:.1} MB), streamed to a sink | {:.0} ms, {:.0} MB/s, {:.0} blocks/s | peak RSS growth {} KiB (same export into a `Vec`: {} KiB) |",
            verified.records,
            size as f64 / 1e6,
            ms(d),
            size as f64 / 1e6 / d.as_secs_f64(),
            block_count / d.as_secs_f64(),
            peak_delta,
            buffered_delta
        );
    }
}

struct CountingSink(usize);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
