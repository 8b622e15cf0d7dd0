// #/driver (driver; operators #/driver/<id>), phone-first: the driver's orders in the suggested stop order
// (GET /drivers/{id}/position -> load.stop_order), each with Sign and Report exception, which go through the
// API's commands. Live via {"driver": id}.
import { api, enc } from '../api.js';
import { claims } from '../auth.js';
import { fmtNum, fmtTime, t } from '../i18n.js';
import { follow } from '../live.js';
import { errorPanel, fill, h } from '../ui.js';
import { exceptionForm, signForm } from './forms.js';
import { ACTIVE_DELIVERY, arrivingSoon, statusBadge } from './order_parts.js';

export const name = 'driver';
export const title = () => t('driver');

/** Orders in visiting order: the suggested stops first (in that order), then the other active ones, then the rest. */
export function inStopOrder(orders, stopOrder = []) {
  const rank = new Map(stopOrder.map((id, i) => [id, i]));
  const key = (o) => (rank.has(o.orderId) ? rank.get(o.orderId) : ACTIVE_DELIVERY.has(o.status) ? 1e6 : 2e6);
  return [...orders].sort((a, b) => key(a) - key(b) || a.orderId.localeCompare(b.orderId));
}

export function mount(root, driverParam) {
  const driverId = driverParam || claims()?.driver_id;
  if (!driverId) {
    root.append(h('div', { class: 'not-found' }, h('h3', {}, t('driver')), h('p', {}, '#/driver/<driverId>')));
    return null;
  }
  const head = h('div', { class: 'driver-head' }, h('h1', {}, `${t('driver')} · ${driverId}`));
  const loadEl = h('p', { class: 'muted load' });
  const list = h('ol', { class: 'stops', testid: 'stop-list' });
  const rest = h('details', { class: 'done-orders' });
  root.append(head, loadEl, list, rest);
  const orders = new Map();
  let stopOrder = []; let open = null; // the order whose form is open: a re-render keeps it

  const stopCard = (o, i) => {
    const active = o.status === 'DELIVERING';
    const formSlot = h('div', { class: 'form-slot' });
    const showForm = (make) => {
      open = o.orderId;
      fill(formSlot, make(o, { onDone: () => { open = null; setTimeout(refresh, 2500); } }),
        h('button', { type: 'button', class: 'btn small', onclick: () => { open = null; fill(formSlot); } }, t('cancel')));
    };
    const soon = arrivingSoon(o);
    return h('li', { class: `stop ${soon ? 'soon' : ''}`, testid: 'stop', dataset: { orderId: o.orderId, status: o.status } },
      h('div', { class: 'stop-head' }, h('span', { class: 'seq' }, i === undefined ? '' : String(i + 1)),
        h('a', { href: `#/orders/${enc(o.orderId)}` }, o.orderId), statusBadge(o.status)),
      h('div', { class: 'stop-facts small' },
        `${t('eta')} ${fmtTime(o.eta, false)} · ${t('window')} ${fmtTime(o.deliveryWindow?.start, false)}–`
        + `${fmtTime(o.deliveryWindow?.end, false)} · ${t('linesN', { n: o.items?.length ?? 0 })}`
        + (o.destination ? ` · ${o.destination.lat.toFixed(4)}, ${o.destination.lng.toFixed(4)}` : ''),
        soon ? h('strong', { class: 'arriving' }, ` · ${t('arrivingSoon')}`) : null),
      h('div', { class: 'stop-actions' },
        h('button', { type: 'button', class: 'btn primary', testid: 'sign-button', disabled: !active,
          onclick: () => showForm((ord, opts) => signForm(ord, { ...opts, mode: 'driver' })) }, t('sign')),
        h('button', { type: 'button', class: 'btn', testid: 'exception-button', disabled: !active,
          onclick: () => showForm(exceptionForm) }, t('reportException'))),
      formSlot);
  };

  const render = () => {
    const sorted = inStopOrder([...orders.values()], stopOrder);
    const current = sorted.filter((o) => ACTIVE_DELIVERY.has(o.status) || stopOrder.includes(o.orderId));
    const others = sorted.filter((o) => !current.includes(o));
    const keep = open ? list.querySelector(`li[data-order-id="${CSS.escape(open)}"]`) : null;
    fill(list, current.map((o, i) => {
      if (!keep || o.orderId !== open) return stopCard(o, i);
      keep.dataset.status = o.status; // keep the half-filled form, refresh the status
      keep.querySelector('.stop-head .badge')?.replaceWith(statusBadge(o.status));
      return keep;
    }));
    if (!current.length) list.append(h('li', { class: 'muted' }, t('noOrders')));
    fill(rest, h('summary', {}, `${t('orders')} (${others.length})`),
      h('ul', { class: 'plain' }, others.map((o) => h('li', {}, h('a', { href: `#/orders/${enc(o.orderId)}` }, o.orderId),
        ' ', statusBadge(o.status)))));
  };

  async function refresh() {
    try {
      const [first, pos] = await Promise.all([
        api('/orders', { query: { driver: driverId, limit: 200 } }),
        api(`/drivers/${enc(driverId)}/position`).catch((err) => (err.status === 404 ? null : Promise.reject(err))),
      ]);
      orders.clear();
      first.orders.forEach((o) => orders.set(o.orderId, o));
      stopOrder = pos?.load?.stop_order || [];
      loadEl.textContent = pos?.load ? `${t('load')}: ${fmtNum(pos.load.load_kg, 1)} kg · `
        + t('onBoard', { n: pos.load.orders_on_board }) + ` · ${fmtTime(pos.at)}` : '';
      render();
    } catch (err) {
      fill(root, errorPanel(err));
    }
  }

  const stop = follow([{ driver: driverId }], {
    onChange: (c) => {
      if (c.kind === 'order' && c.data) {
        const assigned = c.data.driverInfo?.driverId === driverId;
        if (assigned) orders.set(c.orderId, { ...orders.get(c.orderId), ...c.data });
        else orders.delete(c.orderId); // re-dispatched to another van
        render();
      } else if (c.kind === 'eta' && c.data && orders.has(c.orderId)) {
        orders.set(c.orderId, { ...orders.get(c.orderId), eta: new Date(c.data.eta).toISOString(),
          lateRisk: c.data.late_risk });
        render();
      }
    },
    onReset: refresh,
    onReconnected: refresh,
  });
  refresh();
  const timer = setInterval(refresh, 60000); // the suggested stop order follows the fleet view
  return () => { stop(); clearInterval(timer); };
}
