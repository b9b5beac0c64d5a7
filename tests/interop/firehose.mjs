// com.atproto.sync.subscribeRepos read by the reference client (@atproto/xrpc-server's
// Subscription, @atproto/sync's Firehose): every #commit's signature and op proofs verified
// (parseCommitAuthenticated), and the sync 1.1 inductive proof checked — the event's blocks,
// with its ops inverted, rebuild the MST root `prevData` of the commit before.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { MST, MemoryBlockstore, cborToLex, readCar, verifyCommitSig } from '@atproto/repo'
import { Firehose, parseCommitAuthenticated } from '@atproto/sync'
import { alice, baseUrl, bob, firehose } from './env.mjs'

const wsUrl = baseUrl.replace(/^http/, 'ws')
const idResolver = new IdResolver({ plcUrl: baseUrl, fetch: globalThis.fetch, timeout: 10_000 })
const METHOD = 'com.atproto.sync.subscribeRepos'

/** Reads events from `cursor` until `done(events)`; fails after 60 s without it. */
async function collect(cursor, done) {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(new Error('timed out waiting for firehose events')), 60_000)
  const events = []
  const sub = await firehose(cursor, abort.signal)
  try {
    for await (const evt of sub) {
      events.push(evt)
      if (done(events)) break
    }
  } finally {
    clearTimeout(timer)
    abort.abort()
  }
  return events
}

/** The sync 1.1 inductive proof of one #commit event. */
async function checkInductiveProof(evt) {
  const { roots, blocks } = await readCar(evt.blocks)
  assert.deepEqual(roots.map(String), [evt.commit.toString()])
  const commit = cborToLex(blocks.get(evt.commit))
  assert.equal(commit.did, evt.repo)
  assert.equal(commit.rev, evt.rev)
  assert.equal(commit.version, 3)
  const key = await idResolver.did.resolveAtprotoKey(evt.repo)
  assert.ok(await verifyCommitSig(commit, key), `signature of ${evt.commit}`)

  let tree = MST.load(new MemoryBlockstore(blocks), commit.data)
  for (const op of evt.ops) {
    if (op.action === 'create') {
      assert.equal(op.prev ?? null, null)
      assert.equal((await tree.get(op.path))?.toString(), op.cid.toString(), op.path)
    } else if (op.action === 'update') {
      assert.ok(op.prev, `update of ${op.path} without prev`)
      assert.equal((await tree.get(op.path))?.toString(), op.cid.toString(), op.path)
    } else {
      assert.equal(op.cid ?? null, null)
      assert.ok(op.prev, `delete of ${op.path} without prev`)
      assert.equal(await tree.get(op.path), null, op.path)
    }
  }
  // Invert, last op first: the proof blocks must hold every node the inversion touches.
  for (const op of [...evt.ops].reverse()) {
    if (op.action === 'create') tree = await tree.delete(op.path)
    else if (op.action === 'update') tree = await tree.update(op.path, op.prev)
    else tree = await tree.add(op.path, op.prev)
  }
  const root = await tree.getPointer()
  if (evt.prevData) {
    assert.equal(root.toString(), evt.prevData.toString(), `prevData of seq ${evt.seq}`)
  } else {
    assert.equal(evt.since ?? null, null, `seq ${evt.seq}: no prevData on a non-genesis commit`)
    assert.equal((await tree.leaves()).length, 0)
  }
}

test('#commit events: signatures, op proofs, inductive proofs, gap-free seq', async () => {
  const agentA = new AtpAgent({ service: baseUrl })
  await agentA.login({ identifier: alice.handle, password: alice.password })
  const agentB = new AtpAgent({ service: baseUrl })
  await agentB.login({ identifier: bob.handle, password: bob.password })

  // Writes made while the subscription is open reach it live, after the backfill.
  const writes = (async () => {
    const c = 'com.example.fh'
    const a = await agentA.com.atproto.repo.createRecord({ repo: alice.did, collection: c, record: { n: 1 } })
    const rkey = a.data.uri.split('/').pop()
    await agentB.com.atproto.repo.putRecord({ repo: bob.did, collection: c, rkey: 'b', record: { n: 2 } })
    await agentA.com.atproto.repo.putRecord({ repo: alice.did, collection: c, rkey, record: { n: 3 } })
    for (let i = 0; i < 20; i++) {
      await agentA.com.atproto.repo.putRecord({ repo: alice.did, collection: c, rkey: `r${i}`, record: { i } })
    }
    await agentA.com.atproto.repo.applyWrites({
      repo: alice.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: c, rkey: 'x', value: { n: 4 } },
        { $type: 'com.atproto.repo.applyWrites#update', collection: c, rkey: 'r3', value: { n: 5 } },
        { $type: 'com.atproto.repo.applyWrites#delete', collection: c, rkey: 'r7' },
      ],
    })
    await agentA.com.atproto.repo.deleteRecord({ repo: alice.did, collection: c, rkey })
    finalRev = (await agentA.com.atproto.sync.getLatestCommit({ did: alice.did })).data.rev
    // One more event after finalRev is known, so that the check below runs again.
    await agentB.com.atproto.repo.putRecord({ repo: bob.did, collection: c, rkey: 'tick', record: { n: 0 } })
  })()
  let finalRev

  const events = await collect(0, (evts) => finalRev !== undefined && evts.some((e) => e.repo === alice.did && e.rev === finalRev))
  await writes

  // Gap-free, from the first event of the log.
  assert.equal(events[0].seq, 1)
  events.forEach((e, i) => assert.equal(e.seq, i + 1, `event ${i} (${e.$type})`))

  const commits = events.filter((e) => e.$type === `${METHOD}#commit`)
  assert.ok(commits.length >= 25, `${commits.length} commits`)
  const lastRev = new Map()
  for (const evt of commits) {
    await checkInductiveProof(evt)
    // since = the rev of the repo's commit before.
    assert.equal(evt.since ?? null, lastRev.get(evt.repo) ?? null, `since of seq ${evt.seq}`)
    lastRev.set(evt.repo, evt.rev)
    // The reference consumer's own check: commit signature + a proof per op.
    const parsed = await parseCommitAuthenticated(idResolver, evt)
    assert.equal(parsed.length, evt.ops.length, `verified ops of seq ${evt.seq}`)
  }
  const applied = commits.find((e) => e.ops.length === 3)
  assert.deepEqual(applied.ops.map((o) => o.action), ['create', 'update', 'delete'])

  // A cursor in the middle replays exactly what follows it.
  const mid = commits[Math.floor(commits.length / 2)].seq
  const tail = await collect(mid, (evts) => evts.at(-1).seq === events.at(-1).seq)
  assert.deepEqual(tail.map((e) => e.seq), events.filter((e) => e.seq > mid).map((e) => e.seq))
})

test("@atproto/sync's Firehose validates and authenticates the whole log", async () => {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: bob.handle, password: bob.password })
  const marker = await agent.com.atproto.repo.createRecord({
    repo: bob.did,
    collection: 'com.example.marker',
    record: { text: 'last' },
  })
  const seen = []
  const errors = []
  let firehose
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the Firehose never reached the marker')), 60_000)
    firehose = new Firehose({
      idResolver,
      service: wsUrl,
      getCursor: () => 0,
      onError: (err) => errors.push(err),
      handleEvent: (evt) => {
        seen.push(evt)
        if (evt.event === 'create' && evt.uri.toString() === marker.data.uri) {
          clearTimeout(timer)
          resolve()
        }
      },
    })
    firehose.start()
  })
  await firehose.destroy()
  assert.deepEqual(errors.map((e) => `${e.name}: ${e.message} ${e.cause ?? ''}`), [])
  const ops = seen.filter((e) => ['create', 'update', 'delete'].includes(e.event))
  assert.ok(ops.length >= 25, `${ops.length} ops`)
  const last = ops.at(-1)
  assert.equal(last.did, bob.did)
  assert.equal(last.cid.toString(), marker.data.cid)
  assert.equal(last.record.text, 'last')
  // Per-op events are in log order.
  for (let i = 1; i < ops.length; i++) assert.ok(ops[i].seq >= ops[i - 1].seq)
})
