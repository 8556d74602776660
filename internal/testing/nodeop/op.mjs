// A test OpenID Provider: npm's oidc-provider (pinned in package.json) on a
// loopback HTTPS server, configured as nodeop.go documents. Configuration comes
// as JSON in NODEOP_CONFIG; the first line on stdout is {"issuer": "..."}.
//
// Beside the provider's own endpoints it serves, for tests only:
//   GET/POST /interaction/:uid  sign-in and consent in one form (login, groups)
//   POST /__test/rotate         sign with a new key from now on (old kept published)
//   POST /__test/retire         unpublish every key but the signing key
//   GET  /__test/state          {kid, deviceScopes, userinfoRequests}
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const cfg = JSON.parse(process.env.NODEOP_CONFIG);

// Accounts are created by the sign-in form: the user name and the groups typed there.
const accounts = new Map();
// Keys: the first is the signing key (oidc-provider signs with the first key
// that fits the algorithm); the others stay published during a rotation.
let keys = [newKey()];
let provider;
const state = { deviceScopes: '', userinfoRequests: 0 };
const cookieKeys = [crypto.randomBytes(32).toString('hex')];
// One in-memory store for every provider instance of the process, so that a
// key rotation (a new instance) keeps grants, device codes and refresh tokens.
const adapter = createMemoryAdapter(0);

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

// makeProvider builds a provider over the current keys. A rotation builds a new
// one over the same store (adapter), so grants and refresh tokens survive it.
function makeProvider(issuer) {
  const p = new Provider(issuer, {
    clients: [{
      client_id: cfg.clientId,
      client_name: 'modgate login (test)',
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      application_type: 'native',
    }],
    adapter,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      userinfo: { enabled: true },
      revocation: { enabled: true },
    },
    // The default: ID tokens from the token endpoint carry no user claims
    // beyond sub, so groups come only from userinfo.
    conformIdTokenClaims: true,
    scopes: ['openid', 'offline_access', 'email', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    ttl: {
      IdToken: cfg.idTokenTTL,
      AccessToken: cfg.accessTokenTTL,
      DeviceCode: 600,
      RefreshToken: 86400,
      Grant: 86400,
      Interaction: 600,
      Session: 86400,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const a = accounts.get(id) ?? { sub: id, groups: [] };
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: id.includes('@') ? id : undefined, email_verified: id.includes('@') ? true : undefined, groups: a.groups };
        },
      };
    },
  });
  // Refusals are logged to stderr, which the harness shows when a test fails.
  for (const ev of ['grant.error', 'server_error', 'userinfo.error', 'device_authorization.error']) {
    p.on(ev, (ctx, err) => console.error(`${ev}: ${err.name}: ${err.message} ${err.error_detail ?? ''}`));
  }
  p.use(async (ctx, next) => {
    if (ctx.path === '/me') state.userinfoRequests++;
    await next();
    if (ctx.path === '/device/auth' && ctx.oidc?.params?.scope) state.deviceScopes = ctx.oidc.params.scope;
  });
  return p;
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; if (body.length > 1 << 16) req.destroy(); });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch\n');
  if (req.method === 'GET') {
    return send(res, 200, 'text/html; charset=utf-8', `<!doctype html><title>Test IdP: sign in</title>
<form method="post" action="/interaction/${uid}">
<label>User name <input name="login" required></label>
<label>Groups (comma-separated) <input name="groups"></label>
<button type="submit" id="signin">Sign in</button></form>`);
  }
  const form = await readForm(req);
  const login = (form.get('login') ?? '').trim();
  if (!login) return send(res, 400, 'text/plain', 'user name required\n');
  const groups = (form.get('groups') ?? '').split(',').map((g) => g.trim()).filter(Boolean);
  accounts.set(login, { sub: login, groups });
  // Sign-in and consent to every requested scope at once.
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const server = https.createServer({
  cert: fs.readFileSync(cfg.certFile),
  key: fs.readFileSync(cfg.keyFile),
}, async (req, res) => {
  try {
    const url = new URL(req.url, 'https://x');
    const m = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (m) return await interaction(req, res, m[1]);
    switch (`${req.method} ${url.pathname}`) {
      case 'POST /__test/rotate':
        keys = [newKey(), ...keys];
        provider = makeProvider(provider.issuer);
        return send(res, 200, 'application/json', JSON.stringify({ kid: keys[0].kid }));
      case 'POST /__test/retire':
        keys = keys.slice(0, 1);
        provider = makeProvider(provider.issuer);
        return send(res, 200, 'application/json', JSON.stringify({ kid: keys[0].kid }));
      case 'GET /__test/state':
        return send(res, 200, 'application/json', JSON.stringify({ kid: keys[0].kid, ...state }));
      default:
        return provider.callback()(req, res);
    }
  } catch (err) {
    console.error(err);
    if (!res.headersSent) send(res, 500, 'text/plain', `${err.message}\n`);
  }
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `https://127.0.0.1:${server.address().port}`;
  provider = makeProvider(issuer);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Stop with the test: the harness closes stdin.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
