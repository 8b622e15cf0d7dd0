// The single-page app at /ui/: hash routes, the top bar (navigation by role, language toggle, logout, the
// live indicator) and the page lifecycle (each page's mount() returns its cleanup).
import './app.css';
import { claims, clearToken, getToken, isStaff, landing, takeTokenFromFragment, tenant } from './auth.js';
import { currentLang, onLangChange, setLang, t } from './i18n.js';
import { h, fill } from './ui.js';
import * as login from './pages/login.js';
import * as ops from './pages/ops.js';
import * as order from './pages/order.js';
import * as merchant from './pages/merchant.js';
import * as driver from './pages/driver.js';
import * as track from './pages/track.js';
import * as warehouse from './pages/warehouse.js';

/** [pattern, page]; the groups are the page's params */
const ROUTES = [
  [/^#\/login$/, login],
  [/^#\/ops$/, ops],
  [/^#\/orders\/([^/]+)$/, order],
  [/^#\/merchant(?:\/([^/]+))?$/, merchant],
  [/^#\/driver(?:\/([^/]+))?$/, driver],
  [/^#\/track\/([^/]+)$/, track],
  [/^#\/warehouse(?:\/([^/]+))?$/, warehouse],
];

const root = /** @type {HTMLElement} */ (document.getElementById('app'));
let cleanup = null;

function nav() {
  const c = claims();
  const links = [];
  if (isStaff(c)) links.push(['#/ops', t('ops')]);
  if (c?.role === 'merchant' || c?.role === 'customer') links.push(['#/merchant', t('merchant')]);
  if (c?.role === 'driver') links.push(['#/driver', t('driver')]);
  if (c?.role === 'warehouse_staff') links.push(['#/warehouse', t('warehouse')]);
  const here = location.hash.split('/').slice(0, 2).join('/');
  fill(document.getElementById('nav'), links.map(([href, label]) => h('a', { href,
    'aria-current': here === href ? 'page' : undefined }, label)),
  c ? h('span', { class: 'who', title: c.sub }, `${c.role}${tenant(c) ? ` · ${tenant(c)}` : ''}`) : null);
  const logout = document.getElementById('logout');
  logout.hidden = !getToken();
  logout.textContent = t('logout');
}

function route() {
  const next = takeTokenFromFragment();
  if (next !== null) { location.replace(next || landing()); return; }
  const hash = location.hash || '#/';
  if (!getToken() && hash !== '#/login') { location.hash = '#/login'; return; }
  if (hash === '#/' || hash === '#') { location.replace(landing()); return; }
  cleanup?.();
  cleanup = null;
  nav();
  for (const [re, page] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    // a fresh container per visit: an answer that arrives after the viewer left writes into a detached element
    const container = h('div', { class: 'page' });
    root.replaceChildren(container);
    root.className = `app page-${page.name}`;
    const params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
    try {
      cleanup = page.mount(container, ...params) || null;
    } catch (err) {
      console.error(err);
      fill(container, h('div', { class: 'panel-error', role: 'alert' }, `${t('failed')}: ${err.message}`));
    }
    document.title = `Kuailv · ${page.title ? page.title() : ''}`;
    return;
  }
  fill(root, h('div', { class: 'not-found', testid: 'not-found' }, h('h3', {}, t('notFound')),
    h('p', {}, hash), h('a', { href: landing() }, '←')));
}

document.getElementById('lang-toggle').addEventListener('click', () => setLang(currentLang() === 'zh' ? 'en' : 'zh'));
document.getElementById('logout').addEventListener('click', () => {
  clearToken();
  sessionStorage.setItem('kuailv.loginReason', t('signedOut'));
  location.hash = '#/login';
});
onLangChange(() => route()); // every label is rendered from the dictionary: re-render the page
window.addEventListener('hashchange', route);
route();
