// Unit tests of the pages' pure helpers (node's test runner: `npm test`); the pages themselves are tested in a
// browser against the real service (tests/, Playwright).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { claims, landing, tenant } from '../src/auth.js';
import { fmtDuration, setLang, statusName, t } from '../src/i18n.js';
import { inStopOrder } from '../src/pages/driver.js';
import { arrivingSoon } from '../src/pages/order_parts.js';
import { sha256 } from '../src/sha256.js';

globalThis.localStorage ??= { setItem() {}, getItem() { return null; } };
globalThis.document ??= { documentElement: {} };

const hex = (b) => Buffer.from(b).toString('hex');

test('sha256 matches node crypto on empty, short, block-boundary and long inputs', () => {
  for (const len of [0, 3, 55, 56, 63, 64, 65, 1000, 100_003]) {
    const bytes = new Uint8Array(len).map((_, i) => (i * 31 + 7) & 0xff);
    assert.equal(hex(sha256(bytes)), createHash('sha256').update(bytes).digest('hex'), `length ${len}`);
  }
});

const jwt = (payload) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

test('claims decode a JWT payload (base64url, UTF-8) and pick the landing page by role', () => {
  const c = claims(jwt({ sub: '王', role: 'driver', driver_id: 'DRV-001' }));
  assert.deepEqual(c, { sub: '王', role: 'driver', driver_id: 'DRV-001' });
  assert.equal(tenant(c), 'DRV-001');
  assert.equal(landing(c), '#/driver');
  assert.equal(landing({ role: 'customer_service' }), '#/ops');
  assert.equal(landing({ role: 'customer' }), '#/merchant');
  assert.equal(landing({ role: 'warehouse_staff' }), '#/warehouse');
  assert.equal(landing(null), '#/login');
  assert.equal(claims('not-a-jwt'), null);
  assert.equal(claims('a.%%%.c'), null);
});

test('stops: suggested order first, then other active orders, then the rest', () => {
  const o = (orderId, status) => ({ orderId, status });
  const got = inStopOrder([o('A', 'SIGNED'), o('B', 'DELIVERING'), o('C', 'DELIVERING'), o('D', 'EXCEPTION_HANDLING')],
    ['C', 'B']).map((x) => x.orderId);
  assert.deepEqual(got, ['C', 'B', 'D', 'A']);
});

test('arriving soon: ETA within 10 min, or the van at the customer, only while out for delivery', () => {
  const now = Date.parse('2026-06-16T10:00:00Z');
  const order = (eta, status = 'DELIVERING', stages = {}) => ({ status, eta, stages });
  assert.equal(arrivingSoon(order('2026-06-16T10:09:00Z'), now), true);
  assert.equal(arrivingSoon(order('2026-06-16T10:11:00Z'), now), false);
  assert.equal(arrivingSoon(order('2026-06-16T10:05:00Z', 'SIGNED'), now), false);
  assert.equal(arrivingSoon(order('2026-06-16T11:00:00Z', 'DELIVERING',
    { arrived_customer: '2026-06-16T09:58:00Z' }), now), true);
  assert.equal(arrivingSoon(order(null), now), false);
});

test('labels and durations in both languages', () => {
  setLang('en');
  assert.equal(statusName('EXCEPTION_HANDLING'), 'Exception');
  assert.equal(t('sampled', { n: 5 }), 'sampled 5 orders');
  assert.equal(fmtDuration(65 * 60 * 1000), '1 h 5 min');
  assert.equal(fmtDuration(4 * 60 * 1000 + 10_000), '4 min 10 s');
  setLang('zh');
  assert.equal(statusName('SIGNED'), '已签收');
  assert.equal(fmtDuration(65 * 60 * 1000), '1小时 5分');
  setLang('en');
});
