// Walks the portal as the FAQ's people would (issue 8, "Must show"), in
// Debian's headless Chromium driven by playwright-core, against a running
// `tavana up --dev --demo` at PORTAL_BASE_URL. Every page visited is checked
// for the accessibility basics and saved as a screenshot.
//
// Run by .ci/portal-test; by hand:
//   PORTAL_BASE_URL=http://127.0.0.1:8080 node --test --test-concurrency=1 portal.test.mjs

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

const BASE = (process.env.PORTAL_BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const SHOTS = process.env.PORTAL_SCREENSHOTS ?? path.resolve('../../../target/portal-screenshots');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Demo users (README "Demo data").
const APPLICANT = { nid: '0010000011', mobile: '09120000001', name: 'علی رضایی' };
const GUARANTOR = { nid: '0010000021', mobile: '09120000002', name: 'مریم احمدی' };
const FINANCE = { nid: '0010000038', mobile: '09120000003' };
const WELFARE = { nid: '0010000054', mobile: '09120000005' };
const SUPPORT = { nid: '0010000062', mobile: '09120000006' };
const CONTRACTS = { nid: '0010000070', mobile: '09120000007' };
const OTHER_REGION = { nid: '0010000089', mobile: '09120000008' };

const RUN = Date.now().toString(36);
const MERCHANT_NAME = `کتاب‌سرای آزمون ${RUN}`;

const contexts = [];
const profiles = [];
let shotNumber = 0;

/** Opens a fresh browser (its own new user-data-dir) and returns a page. */
async function openBrowser() {
  const profile = await mkdtemp(path.join(tmpdir(), 'portal-chromium-'));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    locale: 'fa-IR',
    viewport: { width: 1100, height: 800 },
  });
  contexts.push(context);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  return page;
}

/** Checks the accessibility basics and saves a full-page screenshot. */
async function visit(page, name, { lang = 'fa' } = {}) {
  const root = await page.evaluate(() => ({
    lang: document.documentElement.lang,
    dir: document.documentElement.dir,
  }));
  assert.deepEqual(root, { lang, dir: lang === 'fa' ? 'rtl' : 'ltr' }, `${name}: lang and dir`);
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter(
        (field) =>
          field.labels.length === 0 &&
          !field.getAttribute('aria-label') &&
          !field.getAttribute('aria-labelledby'),
      )
      .map((field) => field.name || field.id || field.outerHTML),
  );
  assert.deepEqual(unlabelled, [], `${name}: every input has a label`);
  shotNumber += 1;
  const file = path.join(SHOTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
}

async function api(method, pathname, body) {
  const response = await fetch(`${BASE}${pathname}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function latestCode(mobile) {
  const { status, body } = await api('GET', `/v1/dev/sms/${mobile}`);
  if (status !== 200) return null;
  const withCode = (body.items ?? []).find((item) => item.code);
  return withCode ? `${withCode.code}@${withCode.sent_at}` : null;
}

/** Waits for a login code newer than `previous` in the dev SMS inbox. */
async function newCode(mobile, previous) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const latest = await latestCode(mobile);
    if (latest && latest !== previous) return latest.split('@')[0];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no login code reached ${mobile}`);
}

/** Signs in with the mouse and the form labels. */
async function signIn(page, user, shotName) {
  const previous = await latestCode(user.mobile);
  await page.goto(`${BASE}/portal/login`);
  if (shotName) await visit(page, shotName);
  await page.getByLabel('کد ملی').fill(user.nid);
  await page.getByLabel('شمارهٔ همراه').fill(user.mobile);
  await page.getByRole('button', { name: 'دریافت کد پیامکی' }).click();
  await page.waitForURL(`${BASE}/portal/login/code`);
  if (shotName) await visit(page, `${shotName}-code`);
  await page.getByLabel('کد شش‌رقمی').fill(await newCode(user.mobile, previous));
  await page.getByRole('button', { name: 'ورود', exact: true }).click();
  await page.waitForURL(`${BASE}/portal/`);
  await page.getByRole('button', { name: 'خروج' }).waitFor();
}

/** The current Jalali salary period `YYYY-MM` by the dev clock. */
async function currentPeriod() {
  const { body } = await api('GET', '/v1/dev/clock');
  const parts = new Intl.DateTimeFormat('en-US-u-ca-persian-nu-latn', {
    timeZone: 'Asia/Tehran',
    year: 'numeric',
    month: '2-digit',
  }).formatToParts(new Date(body.now));
  const year = parts.find((part) => part.type === 'year').value;
  const month = parts.find((part) => part.type === 'month').value;
  return `${year}-${month}`;
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  const ready = await fetch(`${BASE}/readyz`);
  assert.equal(ready.status, 200, 'the suite is ready');
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  for (const profile of profiles) await rm(profile, { recursive: true, force: true });
});

describe('the portal walk of issue 8', () => {
  let applicant;

  test('public pages are Persian, right to left, with an English switch', async () => {
    const page = await openBrowser();
    await page.goto(`${BASE}/portal/`);
    await visit(page, 'home');
    await page.setViewportSize({ width: 390, height: 844 });
    await visit(page, 'home-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'no sideways scrolling on a phone');
    await page.setViewportSize({ width: 1100, height: 800 });
    await page.goto(`${BASE}/portal/apps`);
    await visit(page, 'apps');
    assert.ok(await page.getByText('Android').isVisible());
    await page.getByRole('link', { name: 'English' }).click();
    await page.waitForURL(/lang=en/);
    await visit(page, 'apps-english', { lang: 'en' });
    assert.ok(await page.getByRole('heading', { name: 'Get the app' }).isVisible());
    await page.getByRole('link', { name: 'فارسی' }).click();
    await page.waitForURL(/lang=fa/);
    await visit(page, 'apps-persian-again');
    const font = await page.evaluate(async () => {
      await document.fonts.ready;
      return document.fonts.check('16px Vazirmatn', 'سلام');
    });
    assert.ok(font, 'Vazirmatn is served by the portal');
  });

  test('keyboard-only sign-in works', async () => {
    const page = await openBrowser();
    const previous = await latestCode(OTHER_REGION.mobile);
    await page.goto(`${BASE}/portal/login`);
    let focused = '';
    for (let presses = 0; presses < 30 && focused !== 'national_id'; presses += 1) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.id ?? '');
    }
    assert.equal(focused, 'national_id', 'Tab reaches the national ID field');
    await page.keyboard.type(OTHER_REGION.nid);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'mobile');
    await page.keyboard.type(OTHER_REGION.mobile);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/portal/login/code`);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'code', 'the code field has focus');
    await page.keyboard.type(await newCode(OTHER_REGION.mobile, previous));
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/portal/`);
    await visit(page, 'signed-in-by-keyboard');
    await page.getByRole('button', { name: 'خروج' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/portal/login`);
    assert.ok(await page.getByText('از پرتال خارج شدید.').isVisible());
  });

  test('the applicant sees the profile and files a credit request', async () => {
    applicant = await openBrowser();
    await signIn(applicant, APPLICANT, 'login');
    await visit(applicant, 'applicant-home');
    await applicant.getByRole('link', { name: 'مشخصات من' }).click();
    await applicant.getByText('ادارهٔ امور اداری و مالی منطقهٔ شما').waitFor();
    await visit(applicant, 'profile');

    await applicant.getByRole('link', { name: 'درخواست اعتبار' }).first().click();
    await applicant.waitForURL(`${BASE}/portal/requests`);
    // 200,000,000 rial salary: the ceiling is 50,000,000 rial, 5,000,000 toman.
    await applicant.getByText('۵٬۰۰۰٬۰۰۰ تومان (۵۰٬۰۰۰٬۰۰۰ ریال)').waitFor();
    await visit(applicant, 'request-form');
    await applicant.getByLabel('کد ملی ضامن').fill(GUARANTOR.nid);
    await applicant.getByLabel('اعتبار ماهانه (تومان)').fill('۴٬۰۰۰٬۰۰۰');
    await applicant.getByLabel('حداکثر تعداد اقساط').fill('12');
    await applicant.getByRole('button', { name: 'ثبت درخواست' }).click();
    await applicant.waitForURL(/\/portal\/requests\/[^/]+$/);
    await applicant.getByText('درخواست شما ثبت شد و برای ضامن فرستاده شد.').waitFor();
    assert.ok(await applicant.locator('ol.timeline li').first().isVisible());
    assert.match(await applicant.locator('ol.timeline').innerText(), /ضامن/);
    await visit(applicant, 'request-timeline');
  });

  test('an employee who opens the finance page is refused', async () => {
    const response = await applicant.goto(`${BASE}/portal/finance`);
    assert.equal(response.status(), 403);
    await applicant.getByRole('heading', { name: 'دسترسی مجاز نیست' }).waitFor();
    assert.equal(await applicant.getByRole('link', { name: 'تأیید مالی منطقه' }).count(), 0, 'no finance menu item');
    await visit(applicant, 'forbidden-finance');
  });

  test('the guarantor approves under "approve or reject guarantee"', async () => {
    const page = await openBrowser();
    await signIn(page, GUARANTOR);
    await page.getByRole('link', { name: 'تأیید یا رد ضمانت' }).first().click();
    const request = page.getByRole('region', { name: APPLICANT.name });
    await request.waitFor();
    await visit(page, 'guarantees');
    await request.getByRole('button', { name: 'تأیید' }).click();
    await page.getByText('ضمانت تأیید شد').waitFor();
    await visit(page, 'guarantee-approved');
  });

  test('region finance approves with the activation time in Jalali', async () => {
    const page = await openBrowser();
    await signIn(page, FINANCE);
    await page.getByRole('link', { name: 'تأیید مالی منطقه' }).click();
    const request = page.getByRole('region', { name: APPLICANT.name });
    await request.waitFor();
    await visit(page, 'finance');
    await request.getByRole('button', { name: 'تأیید' }).click();
    const flash = page.getByText('درخواست تأیید شد؛ قابل استفاده از');
    await flash.waitFor();
    assert.match(await flash.innerText(), /[۰-۹]{4}/, 'a Jalali date in Persian digits');
    await visit(page, 'finance-approved');
  });

  test('after the test clock moves 72 hours the balance shows the credit', async () => {
    await applicant.goto(`${BASE}/portal/requests`);
    await applicant.getByRole('link', { name: 'مشاهدهٔ وضعیت' }).click();
    await applicant.locator('.badge.approved').first().waitFor();
    await visit(applicant, 'request-approved-timeline');

    const moved = await api('POST', '/v1/dev/clock', { advance_seconds: 259200 });
    assert.equal(moved.status, 200);

    await applicant.goto(`${BASE}/portal/balance`);
    const balance = applicant.locator('#balance');
    await balance.waitFor();
    const text = await balance.innerText();
    assert.match(text, /۴٬۰۰۰٬۰۰۰ تومان \(۴۰٬۰۰۰٬۰۰۰ ریال\)/, 'M');
    assert.match(text, /۴۸٬۰۰۰٬۰۰۰ تومان \(۴۸۰٬۰۰۰٬۰۰۰ ریال\)/, 'P = M × N');
    assert.match(text, /فعال/);
    await visit(applicant, 'balance');

    await applicant.getByRole('link', { name: 'وضعیت اقساط' }).click();
    await visit(applicant, 'instalments');
  });

  test('the welfare manager proposes a merchant of the region', async () => {
    const page = await openBrowser();
    await signIn(page, WELFARE);
    await page.getByRole('link', { name: 'معرفی فروشگاه' }).click();
    await page.getByLabel('نام فروشگاه').fill(MERCHANT_NAME);
    await page.locator('#kind').selectOption('online');
    await page.getByLabel('وب‌سایت').fill(`https://shop-${RUN}.example`);
    await page.getByLabel('دسته‌ها').fill('کتاب، لوازم‌التحریر');
    await page.getByLabel('خرید اقساطی').check();
    await page.getByLabel('تلفن تماس').fill('02188880000');
    await visit(page, 'proposal-form');
    await page.getByRole('button', { name: 'ارسال به ادارهٔ قراردادها' }).click();
    await page.getByText('پیشنهاد برای ادارهٔ قراردادها فرستاده شد.').waitFor();
    await page.getByRole('cell', { name: MERCHANT_NAME }).waitFor();
    await visit(page, 'proposals');
  });

  test('contracts approves the proposal and sees the API key once', async () => {
    const page = await openBrowser();
    await signIn(page, CONTRACTS);
    await page.getByRole('link', { name: 'قراردادها' }).click();
    const proposal = page.getByRole('region', { name: MERCHANT_NAME });
    await proposal.waitFor();
    await visit(page, 'contracts');
    await proposal.getByRole('button', { name: 'تأیید' }).click();
    const key = page.locator('#api-key');
    await key.waitFor();
    assert.match(await key.innerText(), /\S{16,}/);
    await visit(page, 'contracts-api-key');
    await page.getByRole('link', { name: 'بازگشت به قراردادها' }).click();
    assert.equal(await page.locator('#api-key').count(), 0, 'the key is not shown again');
  });

  test('the new merchant is found by search in the directory', async () => {
    const page = await openBrowser();
    await page.goto(`${BASE}/portal/merchants`);
    await visit(page, 'merchants');
    assert.ok((await page.locator('article.merchant').count()) >= 3, 'the demo merchants and the new one');
    // htmx replaces the results as the user types, and keeps the URL in step.
    await page.getByLabel('جست‌وجوی نام').fill(`آزمون ${RUN}`);
    await page.waitForURL(/[?&]q=/);
    await page.waitForFunction(() => document.querySelectorAll('article.merchant').length === 1);
    await page.getByRole('heading', { name: MERCHANT_NAME }).waitFor();
    await visit(page, 'merchant-found');
    await page.getByLabel('نوع خرید').selectOption('instalment');
    await page.getByRole('heading', { name: MERCHANT_NAME }).waitFor();
    await page.getByLabel('نوع فروشگاه').selectOption('in_person');
    await page.getByText('فروشگاهی با این مشخصات پیدا نشد.').waitFor();
  });

  test('support changes a mobile, records a remittance from CSV and downloads deductions', async () => {
    const page = await openBrowser();
    await signIn(page, SUPPORT);
    await page.getByRole('link', { name: 'پشتیبانی' }).click();
    await visit(page, 'support');

    await page.getByLabel('کد ملی کارمند').fill('0010000046');
    await page.getByLabel('شمارهٔ همراه تازه').fill('09121234567');
    await page.getByLabel('واحد رفاه درخواست‌کننده').fill('رفاه منطقهٔ ۱');
    await page.getByLabel('شمارهٔ نامه یا مرجع').fill(`REF-${RUN}`);
    await page.getByRole('button', { name: 'ثبت تغییر شماره' }).click();
    await page.getByText('شمارهٔ همراه تغییر کرد.').waitFor();

    const period = await currentPeriod();
    const csv = `national_id,amount\n${APPLICANT.nid},1000000\nnot-a-line\n`;
    await page.getByLabel('شناسهٔ سازمان').first().fill('ORG-01');
    await page.getByLabel('دورهٔ حقوق (سال-ماه شمسی)').first().fill(period);
    await page.getByLabel('شمارهٔ پیگیری بانک').fill(`BANK-${RUN}`);
    await page.getByLabel('فایل CSV بانک').setInputFiles({
      name: 'bank.csv',
      mimeType: 'text/csv',
      buffer: Buffer.from(csv),
    });
    await page.getByRole('button', { name: 'ثبت واریزی' }).click();
    await page.getByRole('heading', { name: 'نتیجهٔ ثبت واریزی' }).waitFor();
    await page.locator('#remittance-summary').waitFor();
    assert.equal(await page.locator('#unmatched tbody tr').count(), 2, 'one row per unused line');
    await visit(page, 'remittance-result');

    await page.getByRole('link', { name: 'بازگشت به پشتیبانی' }).click();
    await page.getByLabel('شناسهٔ سازمان').nth(1).fill('ORG-01');
    await page.locator('#d_period').fill(period);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'دریافت CSV' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^deductions-ORG-01-\d{4}-\d{2}\.csv$/);
    const file = await download.path();
    const { readFile } = await import('node:fs/promises');
    assert.match(await readFile(file, 'utf8'), /^national_id,full_name,total/);

    // R29: support closes the period; closing it again answers the first result.
    for (const _ of [1, 2]) {
      await page.locator('#c_organization_id').fill('ORG-01');
      await page.locator('#c_period').fill(period);
      await page.getByRole('button', { name: 'بستن دوره' }).click();
      await page.getByText('دوره بسته شد.').waitFor();
    }
    await visit(page, 'support-period-closed');

    // R23: the unreadable line waits in the unmatched queue; support returns it.
    await page.getByRole('link', { name: 'سطرهای تطبیق‌نیافته' }).click();
    await visit(page, 'unmatched-lines');
    const openLines = await page.locator('section.card').count();
    assert.ok(openLines >= 1, 'the unused lines are queued');
    await page.locator('section.card').first().getByLabel('توضیح').fill('برگشت به حساب سازمان');
    await page.locator('section.card').first().getByRole('button', { name: 'برگشت به سازمان' }).click();
    await page.getByText('سطر رسیدگی شد.').waitFor();
    assert.equal(await page.locator('section.card').count(), openLines - 1);

    // R29: the overdue list.
    await page.getByRole('link', { name: 'اقساط معوق' }).click();
    await page.getByRole('heading', { name: 'اقساط معوق' }).waitFor();
    await visit(page, 'overdue');

    // R32: the mobile change is in the audit trail at once.
    await page.getByRole('link', { name: 'رویدادنگاری' }).click();
    await page.getByLabel('موضوع (کد ملی، شناسهٔ درخواست، ...)').fill('0010000046');
    await page.getByRole('button', { name: 'جست‌وجو' }).click();
    await page.getByText('employee.mobile_change').first().waitFor();
    await visit(page, 'support-audit');
  });

  test('the applicant closes the credit, owing nothing (R30)', async () => {
    await applicant.goto(`${BASE}/portal/balance`);
    await applicant.locator('#close-facility').waitFor();
    await applicant.getByRole('button', { name: 'بستن اعتبار' }).click();
    await applicant.getByText('اعتبار بسته شد.').waitFor();
    assert.match(await applicant.locator('#balance').innerText(), /بسته/);
    assert.equal(await applicant.locator('#close-facility').count(), 0, 'no second close');
    await visit(applicant, 'facility-closed');
  });
});
