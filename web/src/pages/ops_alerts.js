// The open alerts feed (GET /alerts, then live `alert` changes from {"alerts": true}): filter by severity and
// rule, Acknowledge (POST /alerts/{id}/ack), click an order id to open its page.
import { api, enc } from '../api.js';
import { ruleName, severityName, t } from '../i18n.js';
import { errorPanel, fill, h } from '../ui.js';
import { alertItem } from './order_parts.js';

const SEVERITY_RANK = { CRITICAL: 0, WARNING: 1, INFO: 2 };
const SHOWN = 200;

/** @param {HTMLElement} body @param {{onOpen: (orderId: string) => void}} opts */
export function alertsPanel(body, { onOpen }) {
  /** @type {Map<string, any>} */
  const alerts = new Map();
  const sev = h('select', { id: 'alert-severity', testid: 'alert-filter-severity' });
  const rule = h('select', { id: 'alert-rule', testid: 'alert-filter-rule' });
  const count = h('span', { class: 'muted small', testid: 'alert-count' });
  const list = h('ul', { class: 'alerts feed', testid: 'alert-list', 'aria-live': 'polite' });
  const filters = h('div', { class: 'filters' },
    h('label', { for: 'alert-severity' }, t('severity')), sev, h('label', { for: 'alert-rule' }, t('rule')), rule, count);
  fill(body, filters, list);
  sev.addEventListener('change', render);
  rule.addEventListener('change', render);

  function options(select, values, allLabel, label) {
    const keep = select.value;
    fill(select, h('option', { value: '' }, allLabel), values.map((v) => h('option', { value: v }, label(v))));
    select.value = values.includes(keep) ? keep : '';
  }

  async function ack(a, btn) {
    btn.disabled = true;
    try {
      const r = await api(`/alerts/${enc(a.alert_id)}/ack`, { method: 'POST', body: { note: null } });
      alerts.set(a.alert_id, { ...a, acknowledged: { by: r.acknowledgedBy, at: r.acknowledgedAt } });
      render();
    } catch (err) {
      btn.disabled = false;
      btn.after(errorPanel(err));
    }
  }

  function render() {
    options(sev, ['CRITICAL', 'WARNING', 'INFO'], t('allSeverities'), severityName);
    options(rule, [...new Set([...alerts.values()].map((a) => a.rule_id))].sort(), t('allRules'), ruleName);
    const shown = [...alerts.values()]
      .filter((a) => (!sev.value || a.severity === sev.value) && (!rule.value || a.rule_id === rule.value))
      .sort((a, b) => SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || b.updated_at - a.updated_at);
    count.textContent = `${shown.length} / ${alerts.size}`;
    fill(list, shown.length ? shown.slice(0, SHOWN).map((a) => alertItem(a, { onAck: ack, onOpen }))
      : h('li', { class: 'muted' }, t('noAlerts')));
  }

  let pending = null;
  const renderSoon = () => { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 100); };

  return {
    /** Reads the open alerts over REST (throws the ApiError: the page decides how to show a refusal). */
    async load() {
      const { alerts: rows } = await api('/alerts', { query: { open: true, limit: 500 } });
      alerts.clear();
      rows.forEach((a) => alerts.set(a.alert_id, a));
      render();
    },
    /** A live `alert` change: opened/updated -> shown, resolved -> gone. */
    apply(a) {
      if (!a?.alert_id) return;
      if (a.status === 'RESOLVED') alerts.delete(a.alert_id);
      else alerts.set(a.alert_id, { ...alerts.get(a.alert_id), ...a });
      renderSoon();
    },
  };
}
