// @atproto/lexicon against the io.atcr.* lexicons (lexicons/, as the node ships them): ATCR
// records written through the node are valid for the reference validator, as JSON from
// listRecords and as DAG-CBOR from the verified repository; invalid ones are refused by both.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { DidResolver } from '@atproto/identity'
import { Lexicons, ipldToLex, jsonToLex } from '@atproto/lexicon'
import { cborToLexRecord, readCar, verifyRepoCar } from '@atproto/repo'
import { alice, baseUrl } from './env.mjs'

const lexDir = process.env.ATCR_LEXICONS
assert.ok(lexDir, 'ATCR_LEXICONS is not set')
const docs = readdirSync(lexDir)
  .filter((f) => f.startsWith('io.atcr.') && f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(lexDir, f), 'utf8')))
const lexicons = new Lexicons(docs)
const recordTypes = new Set(docs.filter((d) => d.defs?.main?.type === 'record').map((d) => d.id))

test('ATCR records written through the node validate with @atproto/lexicon', async () => {
  assert.ok(recordTypes.has('io.atcr.tag') && recordTypes.has('io.atcr.manifest') && recordTypes.has('io.atcr.sailor.star'))
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: alice.handle, password: alice.password })
  const repo = alice.did
  const now = new Date().toISOString()
  const digest = `sha256:${'ab'.repeat(32)}`
  const manifestJson = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2 }))
  const blob = (await agent.uploadBlob(manifestJson, { encoding: 'application/vnd.oci.image.manifest.v1+json' })).data.blob

  const manifest = await agent.com.atproto.repo.createRecord({
    repo,
    collection: 'io.atcr.manifest',
    validate: true,
    record: {
      $type: 'io.atcr.manifest',
      repository: 'myapp',
      digest,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      schemaVersion: 2,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: 1234, digest },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 5678, digest, annotations: { a: 'b' } }],
      holdDid: 'did:web:hold.example.com',
      manifestBlob: blob,
      annotations: { 'org.opencontainers.image.title': 'My App' },
      createdAt: now,
    },
  })
  assert.equal(manifest.data.validationStatus, 'valid')
  const index = await agent.com.atproto.repo.createRecord({
    repo,
    collection: 'io.atcr.manifest',
    record: {
      repository: 'myapp',
      digest: `sha256:${'cd'.repeat(32)}`,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, digest, platform: { architecture: 'amd64', os: 'linux' } }],
      createdAt: now,
    },
  })
  assert.equal(index.data.validationStatus, 'valid')
  await agent.com.atproto.repo.putRecord({
    repo,
    collection: 'io.atcr.tag',
    rkey: 'myapp_latest',
    record: { repository: 'myapp', tag: 'latest', manifest: manifest.data.uri, mediaType: 'application/vnd.oci.image.manifest.v1+json', updatedAt: now },
  })
  await agent.com.atproto.repo.createRecord({
    repo,
    collection: 'io.atcr.sailor.star',
    record: { subject: `at://${repo}/io.atcr.repo.page/myapp`, createdAt: now },
  })

  // What the reference refuses, the node refuses too (ATCR lexicons are validated by default).
  const invalid = [
    ['io.atcr.tag', { repository: 'myapp' }],
    ['io.atcr.sailor.star', { subject: 'not an at-uri', createdAt: now }],
    ['io.atcr.manifest', { repository: 'x', digest, mediaType: 'm', schemaVersion: 'two', createdAt: now }],
    ['io.atcr.sailor.star', { subject: `at://${repo}/io.atcr.repo.page/x`, createdAt: 'yesterday' }],
  ]
  for (const [collection, record] of invalid) {
    assert.throws(() => lexicons.assertValidRecord(collection, { $type: collection, ...record }))
    await assert.rejects(
      agent.com.atproto.repo.createRecord({ repo, collection, record }),
      (err) => err.status === 400 && err.error === 'InvalidRequest',
      `${collection} ${JSON.stringify(record)}`,
    )
  }

  // Every stored io.atcr.* record, as JSON (listRecords) and as DAG-CBOR (the verified repo).
  let checked = 0
  const { data } = await agent.com.atproto.repo.describeRepo({ repo })
  for (const collection of data.collections.filter((c) => c.startsWith('io.atcr.'))) {
    const res = await agent.com.atproto.repo.listRecords({ repo, collection, limit: 100 })
    for (const r of res.data.records) {
      lexicons.assertValidRecord(collection, jsonToLex(JSON.parse(JSON.stringify(r.value))))
      checked++
    }
  }
  assert.ok(checked >= 4, `${checked} records`)

  const resolver = new DidResolver({ plcUrl: baseUrl, fetch: globalThis.fetch })
  const key = await resolver.resolveAtprotoKey(repo)
  const car = new Uint8Array(await (await fetch(`${baseUrl}/xrpc/com.atproto.sync.getRepo?did=${repo}`)).arrayBuffer())
  const verified = await verifyRepoCar(car, repo, key)
  const atcr = verified.creates.filter((c) => recordTypes.has(c.collection))
  assert.equal(atcr.length, checked)
  const { blocks } = await readCar(car)
  for (const c of atcr) lexicons.assertValidRecord(c.collection, ipldToLex(cborToLexRecord(blocks.get(c.cid))))
})
