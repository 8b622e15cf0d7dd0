// Pieces of an order shared by the order, track, merchant and driver pages: status badge, progress, timeline
// with stage durations, lines, ETA with the "arriving soon" state, signature record and alert items.
import { fmtDuration, fmtNum, fmtPct, fmtTime, ruleName, severityName, stageName, statusName, t } from '../i18n.js';
import { h } from '../ui.js';

export const MAIN_PATH = ['CREATED', 'PAID', 'PICKING', 'DELIVERING', 'SIGNED'];
export const BRANCHES = ['OUT_OF_STOCK', 'EXCEPTION_HANDLING', 'RETURNING', 'RETURNED', 'CLAIMING', 'CLAIM_SETTLED',
  'CANCELLED'];
export const ACTIVE_DELIVERY = new Set(['DELIVERING', 'EXCEPTION_HANDLING']);
const ARRIVING_SOON_MS = 10 * 60 * 1000;

export function statusBadge(status, testid) {
  return h('span', { class: `badge status status-${status}`, testid, dataset: { status } }, statusName(status));
}

/** How far along the main path (0..1); branches show where they left it. */
export function progress(order) {
  const stages = order.stages || {};
  const reached = ['created', 'paid', 'picking_started', 'dispatched', 'delivered'].filter((s) => s in stages).length;
  const value = order.status === 'SIGNED' ? 1 : reached / MAIN_PATH.length;
  return h('div', { class: `progress ${BRANCHES.includes(order.status) ? 'branch' : ''}`, role: 'progressbar',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(value * 100) },
  h('span', { style: `width:${Math.round(value * 100)}%` }));
}

/** Stages in time order, each with its time and how long until the next stage. */
export function timeline(order) {
  const rows = Object.entries(order.stages || {}).map(([stage, at]) => [stage, at, Date.parse(at)])
    .sort((a, b) => a[2] - b[2]);
  return h('ol', { class: 'timeline', testid: 'order-timeline' }, rows.map(([stage, at, ms], i) => {
    const next = rows[i + 1];
    return h('li', { dataset: { stage } },
      h('span', { class: 'dot' }), h('strong', {}, stageName(stage)),
      h('time', { datetime: at }, fmtTime(at)),
      next ? h('span', { class: 'dur' }, t('duration', { d: fmtDuration(next[2] - ms) })) : null);
  }));
}

const qty = (v, unit = '') => (v === null || v === undefined ? '—' : `${fmtNum(v, 2)}${unit ? ` ${unit}` : ''}`);

export function linesTable(order) {
  return h('table', { class: 'lines', testid: 'order-lines' },
    h('thead', {}, h('tr', {}, [t('item'), t('ordered'), t('picked'), t('weighed'), t('delivered'), t('short')]
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, (order.items || []).map((ln) => h('tr', { dataset: { line: ln.lineNo, sku: ln.sku },
      class: ln.short > 0 ? 'short' : '' },
    h('td', {}, h('span', {}, ln.name), h('small', { class: 'muted' }, ` ${ln.sku}`)),
    h('td', { class: 'num' }, qty(ln.quantity, ln.unit)), h('td', { class: 'num' }, qty(ln.picked)),
    h('td', { class: 'num', title: ln.expectedKg ? `expected ${ln.expectedKg} kg` : undefined }, qty(ln.measuredKg)),
    h('td', { class: 'num' }, qty(ln.delivered)), h('td', { class: 'num' }, ln.short ? qty(ln.short) : '')))));
}

/** Is the van about to arrive: ETA within 10 min, or the van is at the customer (and not yet signed)? */
export function arrivingSoon(order, now = Date.now()) {
  if (!ACTIVE_DELIVERY.has(order.status)) return false;
  const st = order.stages || {};
  if (st.arrived_customer && !st.left_customer && !st.delivered) return true;
  const eta = order.eta ? Date.parse(order.eta) : NaN;
  return Number.isFinite(eta) && eta - now <= ARRIVING_SOON_MS && eta - now > -ARRIVING_SOON_MS;
}

export function etaBox(order) {
  const soon = arrivingSoon(order);
  const risk = order.lateRisk;
  const active = ACTIVE_DELIVERY.has(order.status);
  const delivered = order.stages?.delivered;
  return h('div', { class: `eta ${soon ? 'soon' : ''}`, testid: 'eta', dataset: { arrivingSoon: String(soon),
    eta: order.eta || '' } },
  delivered ? h('div', { class: 'eta-main' }, h('span', { class: 'label' }, `${t('delivered')} `),
    h('strong', {}, fmtTime(delivered)))
    : h('div', { class: 'eta-main' }, h('span', { class: 'label' }, `${t('eta')} `),
      h('strong', {}, active || order.status === 'PICKING' ? fmtTime(order.eta) : '—'),
      order.etaSource ? h('small', { class: 'muted' }, ` (${order.etaSource})`) : null),
  soon ? h('div', { class: 'arriving', role: 'status', testid: 'arriving-soon' }, t('arrivingSoon')) : null,
  active && risk !== null && risk !== undefined ? h('div', { class: `risk ${risk >= 0.5 ? 'high' : ''}` },
    `${t('lateRisk')}: ${fmtPct(risk)}`) : null,
  order.deliveryWindow ? h('div', { class: 'muted' }, `${t('window')}: ${fmtTime(order.deliveryWindow.start)} – `
    + `${fmtTime(order.deliveryWindow.end, false)}`) : null);
}

export function signatureBox(order) {
  const s = order.signature;
  if (!s) return h('p', { class: 'muted', testid: 'signature' }, t('notSigned'));
  return h('div', { class: 'signature', testid: 'signature' },
    h('p', {}, t('signedBy', { name: s.receiverName ?? '—', at: fmtTime(s.at) })),
    h('code', { class: 'ref', title: s.signatureRef }, s.signatureRef),
    s.photoRef ? h('p', { class: 'muted' }, s.photoRef) : null);
}

/**
 * One alert (the API's snake_case record) as a list item with the test hooks.
 * @param {any} a @param {{onAck?: (a: any, btn: HTMLButtonElement) => void, onOpen?: (orderId: string) => void}} opts
 */
export function alertItem(a, { onAck, onOpen } = {}) {
  const ack = a.acknowledged;
  return h('li', { class: `alert sev-${a.severity}`, testid: 'alert-item',
    dataset: { alertId: a.alert_id, severity: a.severity, rule: a.rule_id, orderId: a.order_id || '',
      acknowledged: String(Boolean(ack)) } },
  h('span', { class: `badge sev sev-${a.severity}` }, severityName(a.severity)),
  h('div', { class: 'alert-body' },
    h('div', {}, h('strong', {}, ruleName(a.rule_id)), ' ',
      a.order_id && onOpen ? h('a', { href: `#/orders/${encodeURIComponent(a.order_id)}`,
        onclick: (ev) => { ev.preventDefault(); onOpen(a.order_id); } }, a.order_id) : (a.order_id || a.driver_id || '')),
    h('div', { class: 'msg' }, a.message),
    h('div', { class: 'muted small' }, fmtTime(a.opened_at),
      a.occurrences > 1 ? ` · ×${a.occurrences}` : '',
      ack ? ` · ${t('acknowledged', { by: ack.by, at: fmtTime(ack.at) })}` : '')),
  onAck && !ack ? h('button', { type: 'button', class: 'btn small', testid: 'ack-button', onclick: (ev) => onAck(a, ev.currentTarget) },
    t('acknowledge')) : null);
}
