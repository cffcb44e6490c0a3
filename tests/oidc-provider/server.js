// The OpenID provider of the TPA tests: the real npm `oidc-provider` on
// 127.0.0.1, with the clients and users of a JSON file, and its interaction
// pages replaced by a handler that logs in the user named by `login_hint`
// and grants consent, so tests complete logins without a person.
//
// Usage: node server.js PORT CONFIG.json
// CONFIG.json: {
//   "clients": [{"client_id", "client_secret", "redirect_uris": [...]}],
//   "users": {"<login_hint>": {"sub": "...", "preferred_username": "...", "email": "...", "groups": [...]}},
//   "id_token_ttl": 600,          // seconds (optional)
//   "clock_offset": 0             // seconds added to the provider's clock (optional; tests of expiry)
// }
// Prints "listening on http://127.0.0.1:PORT" once ready.

import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

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
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

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
  // Scope claims go into the ID token (the CA reads groups from it).
  conformIdTokenClaims: false,
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

// Automatic interactions: log in the `login_hint` user, grant what is asked.
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
    const user = config.users[params.login_hint];
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
