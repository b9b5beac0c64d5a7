// A user of the reference PDS signs in to atcr's web pages through ATProto OAuth, in Debian's
// chromium (puppeteer-core): atcr's sign-in page takes the handle, the browser goes to the
// reference PDS's own authorization UI (oauth-signin.mjs signs in and approves there), comes
// back to atcr signed in, and stars a repository. Then the callback URL is replayed (refused:
// single use). With PDS_DIR (the reference PDS's data directory), the user's OAuth tokens are
// then made expired there (as two weeks unused would: access token past its expiry, refresh
// token unused for 15 days) and the star is clicked again: atcr's refresh is refused, and the
// page asks to sign in again. Used by tests/federation.rs and tests/federation_oauth.rs.
// Prints one JSON line:
//   {"signedInAs", "starred", "replayStatus", "replayText", "afterExpiry"}
// Usage: node oauth-web.mjs ATCR_URL HANDLE PASSWORD REPOSITORY [PDS_DIR]
import assert from 'node:assert/strict'
import os from 'node:os'
import path from 'node:path'
import { launchChromium } from './chromium.mjs'
import { approveAtReferencePds } from './oauth-signin.mjs'

const [atcr, handle, password, repository, pdsDir] = process.argv.slice(2)
assert.ok(repository, 'usage: oauth-web.mjs ATCR_URL HANDLE PASSWORD REPOSITORY')
const artifacts = process.env.ATCR_ARTIFACTS || os.tmpdir()

const { browser, close } = await launchChromium('atcr-oauth-')
try {
  const page = await browser.newPage()
  await page.setViewport({ width: 1100, height: 800 })
  await page.goto(`${atcr}/signin?next=/r/${repository}`)
  await page.type('form.oauth input[name=handle]', handle)
  const callback = `${atcr}/oauth/callback`
  let callbackUrl = null
  page.on('request', (req) => {
    if (!callbackUrl && req.url().startsWith(callback)) callbackUrl = req.url()
  })
  await Promise.all([page.waitForNavigation(), page.click('form.oauth button[type=submit]')])
  assert.ok(!page.url().startsWith(atcr), `atcr did not send the browser to the PDS: ${page.url()}\n${await page.evaluate(() => document.body.innerText)}`)
  await approveAtReferencePds(page, { handle, password, redirectPrefix: callback, label: 'atcr-oauth' })
  // Back at atcr, on the repository page it was asked for.
  await page.waitForFunction((p) => location.pathname === p, { timeout: 30_000 }, `/r/${repository}`)
  const text = await page.evaluate(() => document.body.innerText)
  const signedInAs = text.includes(handle) ? handle : null
  await page.screenshot({ path: path.join(artifacts, 'oauth-web-signed-in.png') })
  // Star it: the star button is a form posting to /r/<repo>/star.
  await Promise.all([page.waitForNavigation(), page.click(`form[action="/r/${repository}/star"] button`)])
  const starred = await page.evaluate(() => document.body.innerText.includes('★ Starred'))
  await page.screenshot({ path: path.join(artifacts, 'oauth-web-starred.png') })
  // The callback again, in the same browser: its state was used.
  const replay = await page.goto(callbackUrl)
  const replayText = await page.evaluate(() => document.body.innerText)
  let afterExpiry = null
  if (pdsDir) {
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(path.join(pdsDir, 'account.sqlite'))
    const past = (days) => new Date(Date.now() - days * 86_400_000).toISOString()
    const expired = db
      .prepare('UPDATE token SET expiresAt = ?, updatedAt = ? WHERE did = (SELECT did FROM actor WHERE handle = ?)')
      .run(past(1), past(15), handle)
    db.close()
    assert.ok(expired.changes > 0, 'no OAuth token of the user to expire')
    await page.goto(`${atcr}/r/${repository}`)
    await Promise.all([page.waitForNavigation(), page.click(`form[action="/r/${repository}/star"] button`)])
    afterExpiry = await page.evaluate(() => document.body.innerText)
    await page.screenshot({ path: path.join(artifacts, 'oauth-web-expired.png') })
  }
  console.log(JSON.stringify({ signedInAs, starred, callbackUrl, replayStatus: replay.status(), replayText, afterExpiry }))
} finally {
  await close()
}
