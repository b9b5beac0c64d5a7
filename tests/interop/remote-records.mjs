// The io.atcr.manifest, io.atcr.tag and io.atcr.sailor.star records of one repository on the reference PDS, read
// with @atproto/api (listRecords, getBlob) and validated with @atproto/lexicon against the
// io.atcr.* lexicons ($ATCR_LEXICONS). Used by tests/federation.rs: atcr wrote them there for a
// user of that PDS. Prints one JSON line:
//   {"manifests": [{"rkey", "value", "blobSha256"}], "tags": [{"rkey", "value"}], "stars": […]}
// where blobSha256 is the sha256 (hex) of the manifest blob as the PDS serves it.
// Usage: node remote-records.mjs PDS_URL DID
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { Lexicons, jsonToLex } from '@atproto/lexicon'

const [service, did] = process.argv.slice(2)
assert.ok(service && did, 'usage: remote-records.mjs PDS_URL DID')
const lexDir = process.env.ATCR_LEXICONS
assert.ok(lexDir, 'ATCR_LEXICONS is not set')
const lexicons = new Lexicons(
  readdirSync(lexDir)
    .filter((f) => f.startsWith('io.atcr.') && f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(lexDir, f), 'utf8'))),
)

const agent = new AtpAgent({ service })
async function list(collection) {
  const records = []
  let cursor
  do {
    const page = await agent.com.atproto.repo.listRecords({ repo: did, collection, limit: 100, cursor })
    records.push(...page.data.records)
    cursor = page.data.cursor
  } while (cursor)
  for (const r of records) {
    // Throws on a record the lexicon refuses.
    // @atproto/api hands back lex values (BlobRef, CID): validated from their JSON form.
    lexicons.assertValidRecord(collection, jsonToLex(JSON.parse(JSON.stringify(r.value))))
  }
  return records.map((r) => ({ rkey: r.uri.split("/").pop(), value: JSON.parse(JSON.stringify(r.value)) }))
}

const manifests = await list('io.atcr.manifest')
for (const m of manifests) {
  const cid = m.value.manifestBlob.ref.$link
  const blob = await agent.com.atproto.sync.getBlob({ did, cid })
  m.blobSha256 = crypto.createHash('sha256').update(Buffer.from(blob.data)).digest('hex')
}
const tags = await list('io.atcr.tag')
const stars = await list('io.atcr.sailor.star')
console.log(JSON.stringify({ manifests, tags, stars }))
