// The web pages in a real browser: Debian's chromium, driven over the DevTools protocol by
// puppeteer-core. Signs in (through the redirect from /settings), searches for the repository the
// Rust test pushed, opens it, stars it, creates an app password on the settings page, checks the
// copy button the page script adds, and signs out. The app password is
// written to $ATCR_ARTIFACTS/app-password.txt for the Rust test to log skopeo in with it;
// screenshots go to the same directory.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { launchChromium } from './chromium.mjs'
import { baseUrl, alice } from './env.mjs'

const artifacts = process.env.ATCR_ARTIFACTS

test('sign in, create an app password, sign out', async () => {
  const { browser, close } = await launchChromium()
  try {
    const page = await browser.newPage()
    await page.setViewport({ width: 1100, height: 800 })
    // Settings needs a session: the browser lands on the sign-in form, which comes back here.
    await page.goto(`${baseUrl}/settings`)
    assert.equal(new URL(page.url()).pathname, '/signin')
    await page.type('input[name=identifier]', alice.name)
    await page.type('input[name=password]', alice.password)
    await Promise.all([page.waitForNavigation(), page.click('form.stacked button[type=submit]')])
    assert.equal(new URL(page.url()).pathname, '/settings')
    assert.match(await page.content(), /None yet\./)
    await page.screenshot({ path: path.join(artifacts, 'browser-settings.png') })

    // Search from the home page's box, open the result, star it.
    await page.goto(`${baseUrl}/`)
    await page.type('form.search input[name=q]', 'browsr shop')
    await Promise.all([page.waitForNavigation(), page.click('form.search button[type=submit]')])
    assert.equal(new URL(page.url()).pathname, '/search')
    const hits = await page.$$eval('ol.results a.name', (as) => as.map((a) => a.textContent))
    assert.deepEqual(hits, [`${alice.name}/browser-shop`], 'one typo in the name still finds it')
    await page.screenshot({ path: path.join(artifacts, 'browser-search.png') })
    await Promise.all([page.waitForNavigation(), page.click('ol.results a.name')])
    assert.equal(new URL(page.url()).pathname, `/r/${alice.name}/browser-shop`)
    assert.equal(await page.$eval('form.star .count', (el) => el.textContent), '0')
    await Promise.all([page.waitForNavigation(), page.click('form.star button[type=submit]')])
    assert.equal(new URL(page.url()).pathname, `/r/${alice.name}/browser-shop`)
    assert.match(await page.$eval('form.star button', (el) => el.textContent), /Starred/)
    assert.equal(await page.$eval('form.star .count', (el) => el.textContent), '1')
    await page.screenshot({ path: path.join(artifacts, 'browser-starred.png') })
    // The manifest page, from the tag's digest link.
    await Promise.all([page.waitForNavigation(), page.click('td.digest a')])
    assert.match(new URL(page.url()).pathname, /@sha256:[0-9a-f]{64}$/)
    assert.match(await page.content(), /Blobs/)
    await page.goto(`${baseUrl}/settings`)

    await page.type('input[name=name]', 'browser')
    await Promise.all([page.waitForNavigation(), page.click('form.stacked button[type=submit]')])
    const password = await page.$eval('.notice pre[data-copy]', (el) => el.dataset.copy)
    assert.match(password, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/)
    // The page script added copy buttons (allowed by the page's CSP).
    assert.ok((await page.$$('button.copy')).length >= 2)
    await page.screenshot({ path: path.join(artifacts, 'browser-app-password.png') })
    fs.writeFileSync(path.join(artifacts, 'app-password.txt'), password)

    // The session cookie is HttpOnly: page scripts cannot read it.
    assert.equal(await page.evaluate(() => document.cookie), '')

    await Promise.all([page.waitForNavigation(), page.click('header form button[type=submit]')])
    assert.equal(new URL(page.url()).pathname, '/')
    assert.ok(await page.$('header a[href="/signin"]'))
    await page.goto(`${baseUrl}/settings`)
    assert.equal(new URL(page.url()).pathname, '/signin')
  } finally {
    await close()
  }
})
