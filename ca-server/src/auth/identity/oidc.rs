//! OpenID Connect connectors: discovery of the provider, the authorization
//! URL (code flow, PKCE S256, `state`, `nonce`), and the callback's code
//! exchange and ID token verification (signature, issuer, audience, expiry
//! with a 60 s leeway, nonce, access-token hash), userinfo when a claim the
//! login needs is missing from the ID token, then claims → user
//! ([`super::claims`]). An ID
//! token signed with an unknown key makes the connector fetch the provider's
//! keys again (key rotation), at most once per [`KEY_REFRESH`].
//!
//! The identity is (issuer, `sub`); the username comes from a configurable
//! claim and must parse as a TPA username; email and name are display only.
//! The HTTP client never follows redirects (a redirect from a provider
//! endpoint is an error, not a new destination).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError,
    Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, SubjectIdentifier, TokenResponse as _,
    UserInfoClaims, UserInfoError,
};
use serde::{Deserialize, Serialize};

use super::claims::{self, Claims, Searched};
pub use super::claims::{OidcError, OidcLogin};

use crate::config::OidcConfig;

/// The clock leeway for `exp` and `iat`.
pub const CLOCK_LEEWAY: TimeDelta = TimeDelta::seconds(60);
/// How long a provider may take to answer one request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed discovery is retried at most this often.
const DISCOVERY_RETRY: Duration = Duration::from_secs(10);
/// An ID token signed with an unknown key (`kid`) makes the connector fetch
/// the provider's keys again, at most this often.
pub const KEY_REFRESH: Duration = Duration::from_secs(60);

/// Why an ID token did not verify.
enum Verification {
    /// No key of the provider's key set matches its `kid` (and algorithm).
    UnknownKey,
    /// Anything else.
    Failed(OidcError),
}

impl Verification {
    fn into_error(self) -> OidcError {
        match self {
            Verification::UnknownKey => {
                OidcError::IdToken("signed with a key the provider does not publish".to_owned())
            }
            Verification::Failed(e) => e,
        }
    }
}

/// The ID token's claims beyond the standard ones (groups, custom username claims).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    claims: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type TpaIdTokenFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TpaTokenResponse = StandardTokenResponse<TpaIdTokenFields, CoreTokenType>;
type TpaClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TpaTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the browser is sent to, and what must be kept to finish the login.
pub struct Authorization {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    /// The `state` value (secret until the callback).
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier of the code challenge sent.
    pub pkce_verifier: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorization { <redacted> }")
    }
}

/// One configured provider.
pub struct OidcConnector {
    /// Its configuration.
    pub config: OidcConfig,
    redirect_url: RedirectUrl,
    http: reqwest::Client,
    client: RwLock<Option<Arc<TpaClient>>>,
    last_attempt: Mutex<Option<Instant>>,
    last_key_refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConnector")
            .field("config", &self.config)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

/// The HTTP client for providers: rustls, timeouts, and no redirects followed.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl OidcConnector {
    /// A connector that has not discovered its provider yet.
    pub fn new(
        config: OidcConfig,
        redirect_url: &str,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let redirect_url = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|e| format!("redirect URL {redirect_url:?}: {e}"))?;
        Ok(Self {
            config,
            redirect_url,
            http,
            client: RwLock::new(None),
            last_attempt: Mutex::new(None),
            last_key_refresh: Mutex::new(None),
        })
    }

    /// Whether discovery has succeeded.
    pub fn is_available(&self) -> bool {
        self.client.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Fetches the discovery document and the signing keys. The document's
    /// `issuer` must equal the configured issuer exactly.
    pub async fn discover(&self) -> Result<(), OidcError> {
        if let Ok(mut last) = self.last_attempt.lock() {
            *last = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Unavailable(format!("issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(error_chain(&e)))?;
        let client = TpaClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(self.redirect_url.clone());
        if let Ok(mut slot) = self.client.write() {
            *slot = Some(Arc::new(client));
        }
        Ok(())
    }

    /// Whether the provider is usable, retrying discovery when the last
    /// attempt failed more than [`DISCOVERY_RETRY`] ago (for `/healthz`).
    pub async fn check(&self) -> bool {
        self.client().await.is_ok()
    }

    /// The client, discovering again when the last attempt failed more than
    /// [`DISCOVERY_RETRY`] ago.
    async fn client(&self) -> Result<Arc<TpaClient>, OidcError> {
        if let Some(client) = self.client.read().ok().and_then(|c| c.clone()) {
            return Ok(client);
        }
        let recent = self
            .last_attempt
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|t| t.elapsed() < DISCOVERY_RETRY);
        if recent {
            return Err(OidcError::Unavailable(
                "discovery failed recently".to_owned(),
            ));
        }
        self.discover().await?;
        self.client
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| OidcError::Unavailable("discovery did not complete".to_owned()))
    }

    /// A new authorization request: fresh `state`, `nonce` and PKCE S256 pair.
    pub async fn authorize(&self) -> Result<Authorization, OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Whether `iss` (the authorization response's RFC 9207 parameter) names this provider.
    pub fn is_issuer(&self, iss: &str) -> bool {
        iss == self.config.issuer
    }

    /// Exchanges `code` (with the PKCE verifier) and verifies the ID token
    /// against this provider's keys, issuer and client id, and `nonce`; then
    /// completes its claims from userinfo when one the login needs is missing.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<OidcLogin, OidcError> {
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let (client, claims) = match self.verify(&client, &response, nonce, now) {
            Err(Verification::UnknownKey) if self.may_refresh_keys() => {
                // The provider may have rotated its keys since discovery:
                // fetch them again (at most once per KEY_REFRESH), then retry.
                tracing::info!(connector = %self.config.name, "ID token signed with an unknown key; fetching the provider's keys again");
                self.discover().await?;
                let client = self.client().await?;
                let claims = self
                    .verify(&client, &response, nonce, now)
                    .map_err(Verification::into_error)?;
                (client, claims)
            }
            other => (client, other.map_err(Verification::into_error)?),
        };
        let (claims, searched) = self
            .with_userinfo(&client, response.access_token(), claims)
            .await?;
        claims::user_of(&self.config, &claims, searched)
    }

    /// `claims` completed from the userinfo endpoint when the username,
    /// groups or display-name claim is missing from them. Userinfo is asked
    /// with the access token, and its `sub` must equal the ID token's; its
    /// claims only fill gaps (the signed ID token's values win).
    async fn with_userinfo(
        &self,
        client: &TpaClient,
        access_token: &AccessToken,
        mut claims: Claims,
    ) -> Result<(Claims, Searched), OidcError> {
        let config = &self.config;
        let wanted = [
            &config.username_claim,
            &config.groups_claim,
            &config.display_name_claim,
        ];
        if wanted.iter().all(|c| claims::present(&claims, c)) {
            return Ok((claims, Searched::IdToken));
        }
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| OidcError::IdToken("no sub claim".to_owned()))?;
        let Ok(request) = client.user_info(
            access_token.clone(),
            Some(SubjectIdentifier::new(subject.to_owned())),
        ) else {
            return Ok((claims, Searched::IdTokenNoUserinfo));
        };
        let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
            request.request_async(&self.http).await.map_err(|e| {
                let why = format!("userinfo: {}", error_chain(&e));
                match e {
                    UserInfoError::Request(_) | UserInfoError::Parse(_) => {
                        OidcError::Unavailable(why)
                    }
                    UserInfoError::Response(status, _, _) if status.is_server_error() => {
                        OidcError::Unavailable(why)
                    }
                    UserInfoError::ClaimsVerification(ClaimsVerificationError::InvalidSubject(
                        _,
                    )) => OidcError::UserInfo(
                        "userinfo answered for another subject than the ID token's".to_owned(),
                    ),
                    _ => OidcError::UserInfo(why),
                }
            })?;
        let info = match serde_json::to_value(&info) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(OidcError::UserInfo("userinfo is not an object".to_owned())),
        };
        for (name, value) in info {
            claims.entry(name).or_insert(value);
        }
        Ok((claims, Searched::IdTokenAndUserinfo))
    }

    /// Whether a key refresh is allowed now (and if so, counts it).
    fn may_refresh_keys(&self) -> bool {
        let Ok(mut last) = self.last_key_refresh.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < KEY_REFRESH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Verifies the response's ID token against `client`'s keys, issuer,
    /// client id and `nonce`; returns its claims.
    fn verify(
        &self,
        client: &TpaClient,
        response: &TpaTokenResponse,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<Claims, Verification> {
        let invalid = |e: String| Verification::Failed(OidcError::IdToken(e));
        let id_token = response
            .id_token()
            .ok_or_else(|| invalid("the token response has no ID token".to_owned()))?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha384,
                CoreJwsSigningAlgorithm::RsaSsaPssSha512,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ])
            // `exp` may be up to the leeway in the past, `iat` up to the leeway in the future.
            .set_time_fn(move || now - CLOCK_LEEWAY)
            .set_issue_time_verifier_fn(move |iat| {
                if iat > now + CLOCK_LEEWAY {
                    Err(format!("issued in the future ({iat})"))
                } else {
                    Ok(())
                }
            });
        let expected_nonce = Nonce::new(nonce.to_owned());
        let claims = id_token
            .claims(&verifier, &expected_nonce)
            .map_err(|e| match e {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => Verification::UnknownKey,
                other => invalid(other.to_string()),
            })?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| invalid(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| invalid(e.to_string()))?;
            if actual != *expected {
                return Err(invalid(
                    "at_hash does not match the access token".to_owned(),
                ));
            }
        }
        match serde_json::to_value(claims) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(invalid("its claims are not an object".to_owned())),
        }
    }
}

/// An error with its sources, on one line (never holds secrets: the
/// openidconnect errors describe HTTP statuses and parse failures).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
