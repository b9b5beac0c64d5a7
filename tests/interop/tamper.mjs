// A forged firehose for reference-pds.mjs's "tamper on": rewrites a com.atproto.sync.subscribeRepos
// `#commit` frame so that it stays well-formed (its CAR consistent, every CID matching its block)
// but its commit is signed by `tamperKey`, a secp256k1 key made here, not the account's: what a
// relay or AppView must reject when it checks the signature against the DID document. Only the
// commit block changes (and with it the CAR root and `commit`); ops, blocks, prevData, rev, seq
// and every other frame are kept as they are.
import { Secp256k1Keypair } from '@atproto/crypto'
import { decodeAll, encode } from '@atproto/lex-cbor'
import { blocksToCarFile, cborToLex, readCar, signCommit } from '@atproto/repo'

/** The key tampered commits are signed with, one per process. */
export const tamperKey = await Secp256k1Keypair.create()

/** The frame `bytes` re-signed by `tamperKey` if it is a `#commit`, else `bytes` unchanged. */
export async function tamperCommitFrame(bytes) {
  let header, body
  try {
    ;[header, body] = decodeAll(bytes)
  } catch {
    return bytes
  }
  if (header?.op !== 1 || header.t !== '#commit' || !(body?.blocks instanceof Uint8Array)) {
    return bytes
  }
  const { blocks } = await readCar(body.blocks)
  // The same fields (did, version, data, rev, prev), a new sig.
  const { sig: _, ...unsigned } = cborToLex(blocks.get(body.commit))
  const commit = await signCommit(unsigned, tamperKey)
  blocks.delete(body.commit)
  const cid = await blocks.add(commit)
  const forged = { ...body, commit: cid, blocks: await blocksToCarFile(cid, blocks) }
  return Buffer.concat([encode(header), encode(forged)])
}
