// A SMART app built on openid-client, as a third-party web app would use it:
// discovery from the issuer, authorization code with PKCE S256, state and
// nonce, the token exchange with the library's own ID token validation,
// UserInfo and a refresh. The app listens on loopback for its redirect URI,
// prints the authorization URL for the test's browser to open, and prints
// what it obtained as one "result" event.
//
// Environment: SMARTAUTH_ISSUER, SMARTAUTH_CLIENT_ID, COMPAT_SCOPE, COMPAT_AUD.
import * as client from "openid-client";
import { emit, fail, finish, serve, setting } from "./lib.mjs";

async function main() {
  const issuer = setting("SMARTAUTH_ISSUER");
  const clientId = setting("SMARTAUTH_CLIENT_ID");
  const scope = setting("COMPAT_SCOPE");
  const aud = setting("COMPAT_AUD");

  // The test server speaks plain http on loopback; the library refuses that
  // unless told otherwise.
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();

  let redirectUri = "";
  const { server, base } = await serve(async (req, res) => {
    const current = new URL(req.url, base);
    if (current.pathname !== "/callback") {
      res.writeHead(404).end();
      return;
    }
    const tokens = await client.authorizationCodeGrant(config, current, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    finish(server, res, {
      issuer: config.serverMetadata().issuer,
      tokens: { ...tokens },
      idTokenClaims: claims,
      userinfo,
      refreshed: { ...refreshed },
      refreshedIdTokenClaims: refreshed.claims() || null,
    });
  });
  redirectUri = base + "/callback";

  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    aud,
    state,
    nonce,
    code_challenge: codeChallenge,
    code_challenge_method: "S256",
  });
  await emit("authorize", { url: url.href, redirectUri });
}

main().catch(fail);
