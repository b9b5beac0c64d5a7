// Drives the reference PDS's own OAuth authorization UI (@atproto/oauth-provider-ui, served by
// @atproto/pds at /oauth/authorize) in a puppeteer page: signs in with the handle and the account
// password, approves the consent screen, and resolves with the URL the PDS sends the browser to
// (the client's redirect_uri with code, state and iss). See OAUTH-NOTES.md.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const TOTAL_MS = 60_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * @param {import('puppeteer-core').Page} page on, or on its way to, {pds}/oauth/authorize
 * @param {{ handle: string, password: string, redirectPrefix: string, label?: string, timeoutMs?: number }} opts
 *   label prefixes the screenshot files ($ATCR_ARTIFACTS or the temporary directory); remember
 *   ticks "Remember this account on this device" (later rounds then show an account picker)
 * @returns {Promise<string>} the redirect URL (starts with redirectPrefix)
 */
export async function approveAtReferencePds(page, { handle, password, redirectPrefix, label = 'oauth', remember = false, timeoutMs = TOTAL_MS }) {
  const deadline = Date.now() + Math.min(timeoutMs, TOTAL_MS)
  const steps = []
  let redirected = page.url().startsWith(redirectPrefix) ? page.url() : null
  // Whatever answers at the redirect_uri (maybe nothing): the request itself is the proof.
  const onRequest = (req) => {
    if (!redirected && req.url().startsWith(redirectPrefix)) redirected = req.url()
  }
  const onFrame = (frame) => {
    if (!redirected && frame === page.mainFrame() && frame.url().startsWith(redirectPrefix)) {
      redirected = frame.url()
    }
  }
  page.on('request', onRequest)
  page.on('framenavigated', onFrame)
  const shots = []
  const shot = async (name) => {
    const dir = process.env.ATCR_ARTIFACTS || os.tmpdir()
    const file = path.join(dir, `${label}-${name}.png`)
    try {
      await page.screenshot({ path: file })
      shots.push(file)
    } catch {}
    return file
  }
  const act = new Set()
  try {
    let n = 0
    while (!redirected) {
      if (Date.now() > deadline) throw new Error('timed out')
      const state = await inspect(page, handle).catch(() => null)
      if (redirected) break
      if (!state) {
        await sleep(250)
        continue
      }
      let did = null
      if (state.error && act.has('password')) {
        throw new Error(`the authorization page shows an error: ${state.error}`)
      } else if (state.password) {
        // The sign-in form: the identifier may be pre-filled from login_hint (or read-only).
        if (!act.has('password')) await shot(`${++n}-signin`)
        if (state.identifier && !state.identifierValue) {
          await page.type(state.identifier, handle)
        }
        if (!state.passwordValue) await page.type(state.password, password)
        if (remember && state.remember) await page.click(state.remember).catch(() => {})
        did = state.submit ?? state.next
        if (did) {
          await page.click(did)
          act.add('password')
          steps.push('signin')
        } else {
          await page.keyboard.press('Enter')
          steps.push('signin(enter)')
        }
      } else if (state.authorize) {
        await shot(`${++n}-consent`)
        await page.click(state.authorize)
        steps.push('authorize')
      } else if (state.account) {
        await shot(`${++n}-accounts`)
        await page.click(state.account)
        steps.push('account')
      } else if (state.identifier && state.next) {
        // A handle-first step ("Next" before the password appears).
        await shot(`${++n}-identifier`)
        if (!state.identifierValue) await page.type(state.identifier, handle)
        await page.click(state.next)
        steps.push('identifier')
      } else if (state.welcome) {
        await shot(`${++n}-welcome`)
        await page.click(state.welcome)
        steps.push('welcome')
      } else if (state.error) {
        throw new Error(`the authorization page shows an error: ${state.error}`)
      }
      // Give the click time to take effect before looking again.
      const until = Date.now() + (steps.length ? 1500 : 300)
      while (!redirected && Date.now() < until) await sleep(100)
    }
    return redirected
  } catch (err) {
    const file = await shot('failure')
    let text = ''
    try {
      text = await page.evaluate(() => document.body?.innerText ?? '')
    } catch {}
    const e = new Error(
      `approveAtReferencePds: ${err.message}\n  url: ${page.url()}\n  steps: ${steps.join(' → ') || 'none'}` +
        `\n  screenshot: ${file}\n  page text:\n${text.replace(/^/gm, '    ').slice(0, 4000)}`,
    )
    e.cause = err
    throw e
  } finally {
    page.off('request', onRequest)
    page.off('framenavigated', onFrame)
  }
}

// What the page shows now, as selectors for the elements to use (tagged with data-atcr-oauth).
async function inspect(page, handle) {
  return page.evaluate((handle) => {
    let seq = 0
    const tag = (el) => {
      if (!el) return null
      if (!el.dataset.atcrOauth) el.dataset.atcrOauth = `e${Date.now()}-${seq++}`
      return `[data-atcr-oauth="${el.dataset.atcrOauth}"]`
    }
    const visible = (el) => {
      if (!el || el.disabled) return false
      const r = el.getBoundingClientRect()
      const s = getComputedStyle(el)
      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
    }
    const text = (el) => (el.innerText || el.value || el.getAttribute('aria-label') || '').trim()
    const inputs = [...document.querySelectorAll('input')].filter(visible)
    const buttons = [...document.querySelectorAll('button, [role=button], input[type=submit]')].filter(
      (b) => visible(b) && b.getAttribute('aria-disabled') !== 'true',
    )
    const byText = (re) => buttons.find((b) => re.test(text(b)))
    const pw = inputs.find((i) => i.type === 'password')
    const ident = inputs.find(
      (i) =>
        i !== pw &&
        (/user|handle|identifier|login|email/i.test(`${i.name} ${i.autocomplete} ${i.id}`) ||
          (i.type === 'text' && !i.readOnly)),
    )
    const form = pw?.closest('form')
    const submit =
      (form && [...form.querySelectorAll('button[type=submit], input[type=submit]')].find(visible)) ||
      byText(/^(sign in|log in|next|continue)$/i)
    const remember = inputs.find(
      (i) => i.type === 'checkbox' && !i.checked && /remember/i.test(i.closest('label')?.innerText ?? i.name),
    )
    const authorize = byText(/^(authorize|accept|allow|approve)$/i)
    const account = buttons.find((b) => text(b).includes(handle) || text(b).includes(`@${handle}`))
    const welcome = byText(/^(sign in|continue|next)$/i)
    const error = document.querySelector('[role=alert]')?.innerText?.trim() || null
    return {
      password: tag(pw),
      passwordValue: pw?.value ?? '',
      identifier: tag(ident),
      identifierValue: ident?.value ?? '',
      submit: tag(submit),
      next: tag(byText(/^(next|continue)$/i)),
      remember: tag(remember),
      authorize: tag(authorize),
      account: tag(account),
      welcome: tag(welcome),
      error,
    }
  }, handle)
}
