// The OpenID provider of the TPA tests: the real npm `oidc-provider` on
// 127.0.0.1, with the clients and users of a JSON file, and its interaction
// pages replaced by a handler that logs in the user named by `login_hint`
// and grants consent, so tests complete logins without a person. Without a
// `login_hint` it shows a plain login form (a username field), which the
// headless-browser tests fill in.
//
// Usage: node server.js PORT CONFIG.json
// CONFIG.json: {
//   "clients": [{"client_id", "client_secret", "redirect_uris": [...]}],
//   "users": {"<login_hint>": {"sub": "...", "preferred_username": "...", "email": "...", "groups": [...]}},
//   "id_token_ttl": 600,          // seconds (optional)
//   "clock_offset": 0,            // seconds added to the provider's clock (optional; tests of expiry)
//   "id_token_audience": "other", // re-sign every ID token with this `aud` (optional; audience tests)
//   "claims_in_userinfo_only": true, // ID tokens carry no profile/groups claims: only userinfo has them
//                                    // (django-oidc-provider's default; optional)
//   "userinfo_sub": "other",      // userinfo answers with this `sub` instead (optional; mismatch tests)
//   "userinfo_down": true         // userinfo drops every connection (optional; provider fault tests)
// }
// Each start signs with a fresh RSA key under a fresh `kid`, so restarting
// the provider on the same port is a key rotation.
// Prints "listening on http://127.0.0.1:PORT" once ready.

import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';

const [portArg, configPath] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !configPath) {
  console.error('usage: node server.js PORT CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));

// A clock offset shifts everything the provider dates (iat, exp), for the
// expired and not-yet-valid ID token tests.
const offsetMs = Number(config.clock_offset || 0) * 1000;
if (offsetMs !== 0) {
  const realNow = Date.now;
  Date.now = () => realNow() + offsetMs;
}

const { default: Provider } = await import('oidc-provider');

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = randomBytes(8).toString('hex');
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

const usersBySub = new Map();
for (const user of Object.values(config.users)) {
  usersBySub.set(user.sub, user);
}

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub', 'groups'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
  },
  // Scope claims go into the ID token (the CA reads groups from it), unless
  // the test asks for a provider that puts them only in userinfo.
  conformIdTokenClaims: Boolean(config.claims_in_userinfo_only),
  features: { devInteractions: { enabled: false } },
  ttl: { IdToken: Number(config.id_token_ttl || 600) },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = usersBySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...user };
      },
    };
  },
});

// With `id_token_audience`, ID tokens leave the token endpoint re-signed
// (same key) with another audience: a token minted for another client.
if (config.id_token_audience) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
    const [header, payload] = ctx.body.id_token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    claims.aud = config.id_token_audience;
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const signature = sign('sha256', Buffer.from(`${header}.${body}`), privateKey).toString('base64url');
    ctx.body = { ...ctx.body, id_token: `${header}.${body}.${signature}` };
  });
}

// Userinfo faults: another subject, or an endpoint that is down.
if (config.userinfo_sub || config.userinfo_down) {
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/me') {
      await next();
      return;
    }
    if (config.userinfo_down) {
      ctx.req.socket.destroy();
      return;
    }
    await next();
    if (ctx.body && typeof ctx.body === 'object') {
      ctx.body = { ...ctx.body, sub: config.userinfo_sub };
    }
  });
}

async function formBody(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 4096) break;
  }
  return new URLSearchParams(text);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Automatic interactions: log in the `login_hint` user (or the one typed in
// the login form), grant what is asked.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!match) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    let login = params.login_hint;
    if (!login && ctx.method === 'POST') {
      login = (await formBody(ctx.req)).get('login');
    }
    if (!login) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Test IdP login</title>
<form method="post" action="/interaction/${escapeHtml(match[1])}">
<label for="login">Username</label> <input id="login" name="login" autocomplete="off">
<button id="submit" type="submit">Sign in</button></form>`;
      return;
    }
    const user = config.users[login];
    if (!user) {
      result = { error: 'access_denied', error_description: 'unknown login_hint' };
    } else {
      result = { login: { accountId: user.sub } };
    }
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    if (prompt.details.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: true,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${issuer}`);
});
