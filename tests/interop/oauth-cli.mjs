// `atcr login HOST --oauth` in a browser: chromium opens the link the command printed, signs the
// user of the reference PDS in at atcr through the reference PDS's own authorization page
// (oauth-signin.mjs), allows the command on atcr's page, and follows atcr's redirect to the
// command's loopback listener. Used by tests/federation_oauth.rs. Prints one JSON line:
//   {"allowPage", "listenerText", "settings"}
// Usage: node oauth-cli.mjs LINK HANDLE PASSWORD
import assert from 'node:assert/strict'
import { launchChromium } from './chromium.mjs'
import { approveAtReferencePds } from './oauth-signin.mjs'

const [link, handle, password] = process.argv.slice(2)
assert.ok(password, 'usage: oauth-cli.mjs LINK HANDLE PASSWORD')
const atcr = new URL(link).origin

const { browser, close } = await launchChromium('atcr-oauth-cli-')
try {
  const page = await browser.newPage()
  await page.goto(link)
  // Not signed in: the sign-in page, whose OAuth form brings the browser back to the link.
  await page.type('form.oauth input[name=handle]', handle)
  await Promise.all([page.waitForNavigation(), page.click('form.oauth button[type=submit]')])
  await approveAtReferencePds(page, { handle, password, redirectPrefix: `${atcr}/oauth/callback`, label: 'atcr-cli' })
  await page.waitForSelector('form.cli button[type=submit]', { timeout: 30_000 })
  const allowPage = await page.evaluate(() => document.body.innerText)
  await Promise.all([page.waitForNavigation(), page.click('form.cli button[type=submit]')])
  const listenerText = await page.evaluate(() => document.body.innerText)
  // The settings page counts the secret once the command has exchanged its code.
  let settings = ''
  for (let i = 0; i < 50 && !settings.includes('keeps for you: 1.'); i++) {
    await page.goto(`${atcr}/settings`)
    settings = await page.evaluate(() => document.body.innerText)
    if (!settings.includes('keeps for you: 1.')) await new Promise((r) => setTimeout(r, 200))
  }
  console.log(JSON.stringify({ allowPage, listenerText, settings }))
} finally {
  await close()
}
