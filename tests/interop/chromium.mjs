// Debian's chromium for the browser tests, headless, with a profile of its own (removed by
// close()). CHROMIUM overrides the binary; ATCR_CHROMIUM_ARGS (a JSON array) adds arguments,
// e.g. a --host-resolver-rules mapping a test's host name to 127.0.0.1.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import puppeteer from 'puppeteer-core'

/** @returns {Promise<{ browser: import('puppeteer-core').Browser, close: () => Promise<void> }>} */
export async function launchChromium(prefix = 'atcr-browser-') {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      `--user-data-dir=${profile}`,
      ...JSON.parse(process.env.ATCR_CHROMIUM_ARGS ?? '[]'),
    ],
  })
  const close = async () => {
    await browser.close()
    fs.rmSync(profile, { recursive: true, force: true })
  }
  return { browser, close }
}
