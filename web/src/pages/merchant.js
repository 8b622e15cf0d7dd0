// #/merchant (merchant / customer; operators #/merchant/<customerId>): the customer's orders with their
// progress (paged), stock warnings and short lines. Live via {"customer": id}.
import { api, enc } from '../api.js';
import { claims } from '../auth.js';
import { fmtNum, fmtTime, t } from '../i18n.js';
import { follow } from '../live.js';
import { card, errorPanel, fill, h, loadInto } from '../ui.js';
import { etaBox, progress, statusBadge } from './order_parts.js';

export const name = 'merchant';
export const title = () => t('merchant');

/** A table of orders that live changes update in place; `more` pages on. Shared with the warehouse page. */
export function orderTable({ query, linkTo = (id) => `#/orders/${enc(id)}` }) {
  const tbody = h('tbody');
  const rows = new Map();
  const moreBtn = h('button', { type: 'button', class: 'btn small', hidden: true }, t('more'));
  const table = h('table', { class: 'orders', testid: 'order-table' },
    h('thead', {}, h('tr', {}, [t('order'), t('status'), t('progress'), `${t('eta')} / ${t('delivered')}`, t('window'), t('short')]
      .map((c) => h('th', { scope: 'col' }, c)))), tbody);
  const row = (o) => h('tr', { testid: 'merchant-order', dataset: { orderId: o.orderId, status: o.status } },
    h('td', {}, h('a', { href: linkTo(o.orderId) }, o.orderId), o.status === 'DELIVERING'
      ? [' ', h('a', { href: `#/track/${enc(o.orderId)}`, class: 'small' }, t('track'))] : null),
    h('td', {}, statusBadge(o.status)),
    h('td', {}, progress(o)), h('td', {}, etaBox(o).querySelector('strong')?.textContent || '—'),
    h('td', { class: 'small' }, o.deliveryWindow ? `${fmtTime(o.deliveryWindow.start)}–${fmtTime(o.deliveryWindow.end, false)}` : '—'),
    h('td', { class: 'num' }, o.shortLines?.length ? fmtNum(o.shortLines.length) : ''));
  const upsert = (o) => {
    const el = row(o);
    const old = rows.get(o.orderId);
    if (old) old.replaceWith(el); else tbody.prepend(el);
    rows.set(o.orderId, el);
  };
  let cursor = null;
  const page = async () => {
    const res = await api('/orders', { query: { ...query, limit: 50, cursor } });
    for (const o of res.orders) {
      const el = row(o);
      rows.get(o.orderId)?.remove();
      tbody.append(el);
      rows.set(o.orderId, el);
    }
    cursor = res.nextCursor;
    moreBtn.hidden = !cursor;
    return res;
  };
  moreBtn.addEventListener('click', () => page().catch((err) => moreBtn.after(errorPanel(err))));
  const reload = async () => { tbody.replaceChildren(); rows.clear(); cursor = null; return page(); };
  return { el: h('div', { class: 'table-wrap' }, table, moreBtn), page, reload, upsert, size: () => rows.size };
}

export function mount(root, customerParam) {
  const c = claims();
  const customerId = customerParam || c?.customer_id;
  if (!customerId) {
    root.append(h('div', { class: 'not-found' }, h('h3', {}, t('merchant')), h('p', {}, '#/merchant/<customerId>')));
    return null;
  }
  const [ordersCard, ordersBody] = card(`${t('orders')} · ${customerId}`, { cls: 'wide' });
  const [stockCard, stockBody] = card(t('stockWarnings'));
  const [shortCard, shortBody] = card(t('shortLines'));
  root.append(h('div', { class: 'merchant-grid' }, ordersCard, h('div', { class: 'side' }, stockCard, shortCard)));
  const table = orderTable({ query: { customer: customerId } });

  const loadOrders = async () => {
    try {
      fill(ordersBody, h('p', { class: 'muted' }, t('loading')));
      const res = await table.reload();
      fill(ordersBody, res.orders.length ? table.el : h('p', { class: 'muted' }, t('noOrders')));
    } catch (err) {
      fill(root, errorPanel(err)); // a refusal replaces the whole page: nothing of another tenant shows
    }
  };

  const loadStock = () => loadInto(stockBody, async () => {
    const s = await api('/dashboard/merchant-stock', { query: { customer: customerId } });
    fill(stockBody, s.warnings.length ? h('ul', { class: 'stock', testid: 'stock-warnings' }, s.warnings.map((w) =>
      h('li', { class: w.low ? 'low' : '' }, h('strong', {}, w.name || w.sku), ` ${w.sku} @ ${w.warehouseId}: `,
        `${t('onHand')} ${fmtNum(w.onHand, 1)}, ${t('reorderPoint')} ${fmtNum(w.reorderPoint, 1)}`,
        w.restockSuggested ? h('span', { class: 'badge info' }, t('restock', { q: fmtNum(w.restockSuggested, 1) })) : null)))
      : h('p', { class: 'muted' }, t('none')));
    fill(shortBody, s.shortLines.length ? h('ul', { class: 'short-lines' }, s.shortLines.map((l) =>
      h('li', {}, h('a', { href: `#/orders/${enc(l.orderId)}` }, l.orderId), ` ${l.name || l.sku}: −${fmtNum(l.short, 2)}`)))
      : h('p', { class: 'muted' }, t('none')));
  }).then(() => {
    if (stockBody.querySelector('[data-testid="refusal"], [data-testid="unavailable"]')) {
      fill(shortBody, stockBody.firstChild.cloneNode(true));
    }
  });

  const stop = follow([{ customer: customerId }], {
    onChange: (ch) => { if (ch.kind === 'order' && ch.data) table.upsert(ch.data); },
    onReset: loadOrders,
  });
  loadOrders();
  loadStock();
  const stockTimer = setInterval(loadStock, 60000);
  return () => { stop(); clearInterval(stockTimer); };
}
