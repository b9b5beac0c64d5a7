// The firehose's window (this node runs with pds.events_keep_secs = 1): a cursor older than the
// oldest kept event gets #info OutdatedCursor through the reference client (@atproto/xrpc-server's
// Subscription), then the oldest kept events, whose commits the reference consumer verifies.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { parseCommitAuthenticated } from '@atproto/sync'
import { alice, baseUrl, firehose } from './env.mjs'

const METHOD = 'com.atproto.sync.subscribeRepos'
const idResolver = new IdResolver({ plcUrl: baseUrl, fetch: globalThis.fetch, timeout: 10_000 })

/** The first `n` messages a subscriber from `cursor` gets. */
async function first(cursor, n) {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(new Error('timed out waiting for firehose events')), 30_000)
  const sub = await firehose(cursor, abort.signal)
  const events = []
  try {
    for await (const evt of sub) {
      events.push(evt)
      if (events.length === n) break
    }
  } finally {
    clearTimeout(timer)
    abort.abort()
  }
  return events
}

test('an outdated cursor is told so, then gets the oldest kept events', async () => {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: alice.handle, password: alice.password })
  for (let i = 0; i < 3; i++) {
    await agent.com.atproto.repo.createRecord({ repo: alice.did, collection: 'com.example.window', record: { i } })
  }
  // The node prunes every second with a one-second window: soon seq 1 is gone.
  let events = []
  for (let attempt = 0; attempt < 120 && events[0]?.$type !== `${METHOD}#info`; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    events = await first(0, 2)
  }
  assert.equal(events[0].$type, `${METHOD}#info`, 'the log was never pruned')
  assert.equal(events[0].name, 'OutdatedCursor')
  assert.ok(events[1].seq > 1, `continues from the oldest kept event (seq ${events[1].seq})`)

  // What follows the #info is the log from its oldest kept event on, gap-free, through the
  // last write, and each commit still verifies.
  const head = (await agent.com.atproto.sync.getLatestCommit({ did: alice.did })).data
  const start = events[1].seq
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(new Error('timed out reading to the last write')), 30_000)
  const rest = []
  try {
    const sub = await firehose(start - 1, abort.signal)
    for await (const evt of sub) {
      rest.push(evt)
      if (evt.rev === head.rev) break
    }
  } finally {
    clearTimeout(timer)
    abort.abort()
  }
  // The pruner may have moved on meanwhile (another #info first); what follows is gap-free.
  const kept = rest.filter((e) => e.$type !== `${METHOD}#info`)
  assert.ok(kept[0].seq >= start)
  kept.forEach((e, i) => assert.equal(e.seq, kept[0].seq + i, `gap-free from ${kept[0].seq}`))
  for (const evt of kept.filter((e) => e.$type === `${METHOD}#commit`)) {
    const ops = await parseCommitAuthenticated(idResolver, evt)
    assert.equal(ops.length, evt.ops.length)
  }
})
