// #/login: paste a token (or arrive with /ui/#token=<JWT>). The role in the token picks the landing page;
// the service decides what the token may read.
import { claims, landing, setToken } from '../auth.js';
import { t } from '../i18n.js';
import { h } from '../ui.js';

export const name = 'login';
export const title = () => t('login');

export function mount(root) {
  const reason = sessionStorage.getItem('kuailv.loginReason');
  sessionStorage.removeItem('kuailv.loginReason');
  const input = h('textarea', { id: 'token', name: 'token', rows: 4, required: true, spellcheck: 'false',
    autocomplete: 'off', placeholder: 'eyJhbGciOi...' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'login card', onsubmit: (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!claims(token)) { error.textContent = t('badToken'); return; }
    setToken(token);
    location.hash = landing(claims(token));
  } },
  h('h1', {}, t('login')),
  reason ? h('p', { class: 'notice', testid: 'login-reason' }, reason) : null,
  h('label', { for: 'token' }, t('tokenLabel')), input,
  h('p', { class: 'help' }, t('tokenHelp')), error,
  h('button', { type: 'submit', class: 'btn primary' }, t('signIn')));
  root.append(form);
  input.focus();
}
