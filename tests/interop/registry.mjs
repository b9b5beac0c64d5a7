// The registry on ATProto, checked by the reference libraries: images alice pushed with skopeo
// (tests/pds_interop.rs passes what it pushed in ATCR_PUSHED) are io.atcr.* records in her
// repository that @atproto/repo verifies and @atproto/lexicon validates, whose manifestBlob is
// the manifest, and whose tags name what the registry serves; and records alice writes with
// @atproto/api serve over the OCI API like pushes.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { DidResolver } from '@atproto/identity'
import { Lexicons, ipldToLex } from '@atproto/lexicon'
import { cborToLexRecord, readCar, verifyRepoCar } from '@atproto/repo'
import { alice, baseUrl } from './env.mjs'

const pushed = JSON.parse(process.env.ATCR_PUSHED ?? 'null')
assert.ok(pushed, 'ATCR_PUSHED is not set')
const port = new URL(baseUrl).port
const resolver = new DidResolver({ plcUrl: baseUrl, fetch: globalThis.fetch, timeout: 10_000 })
const lexDir = process.env.ATCR_LEXICONS
const lexicons = new Lexicons(
  readdirSync(lexDir)
    .filter((f) => f.startsWith('io.atcr.') && f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(lexDir, f), 'utf8'))),
)
const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ')

const sha256 = (bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** An anonymous registry token (the hold is public) for pulling `repo`. */
async function pullToken(repo) {
  const scope = encodeURIComponent(`repository:${repo}:pull`)
  const res = await fetch(`${baseUrl}/auth/token?service=localhost:${port}&scope=${scope}`)
  assert.equal(res.status, 200)
  return (await res.json()).token
}

/** GET of a manifest over the OCI API: status, digest header, bytes. */
async function getManifest(repo, reference) {
  const res = await fetch(`${baseUrl}/v2/${repo}/manifests/${reference}`, {
    headers: { Authorization: `Bearer ${await pullToken(repo)}`, Accept: ACCEPT },
  })
  return {
    status: res.status,
    digest: res.headers.get('docker-content-digest'),
    bytes: new Uint8Array(await res.arrayBuffer()),
  }
}

/** alice's repository, downloaded and verified against her DID document's key. */
async function aliceRecords() {
  const key = (await resolver.resolveAtprotoData(alice.did)).signingKey
  const res = await fetch(`${baseUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(alice.did)}`)
  assert.equal(res.status, 200)
  const car = new Uint8Array(await res.arrayBuffer())
  const verified = await verifyRepoCar(car, alice.did, key)
  const { blocks } = await readCar(car)
  return verified.creates
    .filter((c) => c.collection.startsWith('io.atcr.'))
    .map((c) => ({ ...c, value: cborToLexRecord(blocks.get(c.cid)) }))
}

test('pushed images are signed, valid io.atcr records in the owner repository', async () => {
  const records = await aliceRecords()
  for (const r of records) lexicons.assertValidRecord(r.collection, ipldToLex(r.value))
  const manifests = records.filter((r) => r.collection === 'io.atcr.manifest')
  const tags = records.filter((r) => r.collection === 'io.atcr.tag')
  assert.ok(manifests.length >= 4, `${manifests.length} manifest records`)

  // manifestBlob is the exact manifest: its sha256 is the record's digest.
  for (const m of manifests) {
    const cid = m.value.manifestBlob.ref.toString()
    const res = await fetch(`${baseUrl}/xrpc/com.atproto.sync.getBlob?did=${alice.did}&cid=${cid}`)
    assert.equal(res.status, 200, `getBlob ${cid}`)
    assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), m.value.digest)
    assert.equal(m.value.holdDid.startsWith('did:web:'), true)
  }

  // Every pushed tag has a record naming a manifest record whose digest is what the
  // registry serves under that tag.
  for (const [repository, byTag] of Object.entries(pushed)) {
    for (const [tag, digest] of Object.entries(byTag)) {
      const t = tags.find((r) => r.value.repository === repository && r.value.tag === tag)
      assert.ok(t, `a tag record for ${repository}:${tag}`)
      const [, , did, collection, rkey] = t.value.manifest.split('/')
      assert.equal(did, alice.did)
      assert.equal(collection, 'io.atcr.manifest')
      const m = manifests.find((r) => r.rkey === rkey)
      assert.ok(m, `the manifest record ${t.value.manifest}`)
      assert.equal(m.value.digest, digest)
      const served = await getManifest(`alice/${repository}`, tag)
      assert.equal(served.status, 200)
      assert.equal(served.digest, digest)
    }
  }

  // The index lists its children with their platforms; each child has its own record.
  const index = manifests.find((m) => m.value.mediaType === 'application/vnd.oci.image.index.v1+json')
  assert.ok(index, 'an index record')
  assert.ok(index.value.manifests.length >= 2)
  for (const child of index.value.manifests) {
    assert.ok(child.platform?.architecture && child.platform?.os, JSON.stringify(child))
    assert.ok(manifests.some((m) => m.value.digest === child.digest), `a record for ${child.digest}`)
  }
})

test('records written with @atproto/api index like pushes, and grant no blob by themselves', async () => {
  const agent = new AtpAgent({ service: baseUrl })
  await agent.login({ identifier: alice.handle, password: alice.password })
  // Reuse the config and layers of a pushed image: they are in the node's blob storage.
  const records = await aliceRecords()
  const image = records.find(
    (r) => r.collection === 'io.atcr.manifest' && r.value.mediaType === 'application/vnd.oci.image.manifest.v1+json',
  )
  const strip = ({ mediaType, size, digest }) => ({ mediaType, size, digest })
  const manifestBytes = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: strip(image.value.config),
      layers: image.value.layers.map(strip),
      annotations: { 'org.opencontainers.image.title': 'written with @atproto/api' },
    }),
  )
  const digest = sha256(manifestBytes)
  const blob = (await agent.uploadBlob(manifestBytes, { encoding: 'application/vnd.oci.image.manifest.v1+json' })).data.blob
  const now = new Date().toISOString()
  const record = {
    $type: 'io.atcr.manifest',
    repository: 'direct',
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    schemaVersion: 2,
    manifestBlob: blob,
    createdAt: now,
  }
  const manifest = await agent.com.atproto.repo.createRecord({ repo: alice.did, collection: 'io.atcr.manifest', record })
  /** Tags manifest record `uri` as `alice/direct:<tag>`; returns what the registry serves. */
  const tagged = async (tag, uri) => {
    await agent.com.atproto.repo.putRecord({
      repo: alice.did,
      collection: 'io.atcr.tag',
      rkey: `direct~${tag}`,
      record: { $type: 'io.atcr.tag', repository: 'direct', tag, manifest: uri, updatedAt: now },
    })
    // The registry indexes the event in the background: give it a moment.
    let served
    for (let i = 0; i < 50; i++) {
      served = await getManifest('alice/direct', tag)
      if (served.status === 200) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return served
  }
  const served = await tagged('v9', manifest.data.uri)
  assert.equal(served.status, 200)
  assert.equal(served.digest, digest)
  assert.deepEqual(served.bytes, manifestBytes)
  // A record grants access to no blob: the layers were uploaded into the pushed image's
  // repository, not into alice/direct, and no hold layer record vouches for them there.
  const layer = image.value.layers[0].digest
  const res = await fetch(`${baseUrl}/v2/alice/direct/blobs/${layer}`, {
    method: 'HEAD',
    headers: { Authorization: `Bearer ${await pullToken('alice/direct')}` },
  })
  assert.equal(res.status, 404)
  const own = await fetch(`${baseUrl}/v2/alice/${image.value.repository}/blobs/${layer}`, {
    method: 'HEAD',
    headers: { Authorization: `Bearer ${await pullToken(`alice/${image.value.repository}`)}` },
  })
  assert.equal(own.status, 200)

  // The same manifest under a digest key (`sha256:<hex>`, as ATCR writes it) next to the
  // first record: the manifest is served while either record stands.
  const byDigest = await agent.com.atproto.repo.createRecord({
    repo: alice.did,
    collection: 'io.atcr.manifest',
    rkey: digest,
    record,
  })
  assert.equal(byDigest.data.uri, `at://${alice.did}/io.atcr.manifest/${digest}`)
  const firstKey = manifest.data.uri.split('/').pop()
  await agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: 'io.atcr.manifest', rkey: firstKey })
  // Indexing is in the background, in commit order: once a tag written after the delete
  // (naming the digest-keyed record) is served, the delete has been indexed too.
  const v10 = await tagged('v10', byDigest.data.uri)
  assert.equal(v10.status, 200, 'served while the digest-keyed record stands')
  assert.equal(v10.digest, digest)
  const byDigestUrl = async () => (await getManifest('alice/direct', digest)).status
  assert.equal(await byDigestUrl(), 200)
  await agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: 'io.atcr.manifest', rkey: digest })
  let status
  for (let i = 0; i < 50; i++) {
    status = await byDigestUrl()
    if (status === 404) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.equal(status, 404, 'gone with the last record')
})
