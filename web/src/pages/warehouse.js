// #/warehouse (warehouse staff; operators #/warehouse/<id>): the warehouse's orders (without contact data, as
// the API redacts them), its stock levels and replenishment suggestions. Live via {"warehouse": id}.
import { api } from '../api.js';
import { claims } from '../auth.js';
import { fmtNum, t } from '../i18n.js';
import { follow } from '../live.js';
import { card, errorPanel, fill, h, loadInto } from '../ui.js';
import { orderTable } from './merchant.js';

export const name = 'warehouse';
export const title = () => t('warehouse');

export function mount(root, warehouseParam) {
  const warehouseId = warehouseParam || claims()?.warehouse_id;
  if (!warehouseId) {
    root.append(h('div', { class: 'not-found' }, h('h3', {}, t('warehouse')), h('p', {}, '#/warehouse/<warehouseId>')));
    return null;
  }
  const [ordersCard, ordersBody] = card(`${t('orders')} · ${warehouseId}`, { cls: 'wide' });
  const [stockCard, stockBody] = card(t('levels'));
  root.append(h('div', { class: 'merchant-grid' }, ordersCard, h('div', { class: 'side' }, stockCard)));
  const table = orderTable({ query: { warehouse: warehouseId } });
  const loadOrders = async () => {
    try {
      const res = await table.reload();
      fill(ordersBody, res.orders.length ? table.el : h('p', { class: 'muted' }, t('noOrders')));
    } catch (err) { fill(root, errorPanel(err)); }
  };
  const loadStock = () => loadInto(stockBody, async () => {
    const s = await api('/dashboard/stock', { query: { warehouse: warehouseId } });
    const low = s.levels.filter((l) => l.low);
    fill(stockBody, h('p', { class: 'muted' }, `${s.levels.length} SKU · ${low.length} ${t('low')}`),
      h('table', { class: 'lines' }, h('thead', {}, h('tr', {}, [t('sku'), t('onHand'), t('reorderPoint')]
        .map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, [...low, ...s.levels.filter((l) => !l.low)].slice(0, 60).map((l) => h('tr', { class: l.low ? 'short' : '' },
        h('td', {}, l.name || l.sku), h('td', { class: 'num' }, fmtNum(l.onHand, 1)),
        h('td', { class: 'num' }, fmtNum(l.reorderPoint, 1)))))),
      s.suggestions?.length ? [h('h3', {}, t('suggestions')), h('ul', {}, s.suggestions.map((x) =>
        h('li', {}, `${x.sku}: ${t('restock', { q: fmtNum(x.quantity, 1) })}`)))] : null);
  });
  const stop = follow([{ warehouse: warehouseId }], {
    onChange: (c) => { if (c.kind === 'order' && c.data) table.upsert(c.data); },
    onReset: loadOrders,
  });
  loadOrders();
  loadStock();
  return () => stop();
}
