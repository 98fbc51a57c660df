//! Secrets never reach Debug output or error messages.

use falcon_sdk::{Credentials, FalconClient};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

fn chain(err: &dyn std::error::Error) -> String {
    let mut s = format!("{err} / {err:?}");
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(&format!(" / {e} / {e:?}"));
        src = e.source();
    }
    s
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .mount(&server)
        .await;
    client.hosts().query().send().await.unwrap(); // a token is now cached
    let creds = Credentials {
        client_id: "cid".into(),
        client_secret: SecretString::from(SECRET),
        member_cid: None,
    };
    let builder = FalconClient::builder()
        .client_id("x")
        .client_secret(SecretString::from(SECRET));
    for s in [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{creds:?}"),
        format!("{builder:?}"),
        format!("{:?}", client.hosts()),
    ] {
        assert!(!s.contains(SECRET), "{s}");
        assert!(!s.contains(ACCESS_TOKEN), "{s}");
    }
    assert!(format!("{creds:?}").contains("[REDACTED]"));
}

#[tokio::test]
async fn errors_never_show_secrets() {
    // Token endpoint answering garbage that includes the token: the decode error must not echo it.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "access_token": ACCESS_TOKEN, "expires_in": "soon", "token_type": "bearer"
        })))
        .mount(&server)
        .await;
    catch_all(&server).await;
    let client = builder(&server).build().unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, falcon_sdk::Error::Auth { .. }), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains(ACCESS_TOKEN), "{text}");

    // Rejected credentials.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "errors": [{"code": 401, "message": "invalid client"}]
        })))
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let err = client.hosts().query().send().await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("invalid client"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // API error after a successful login: the bearer token is not echoed.
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/devices/queries/devices/v1"))
        .respond_with(ResponseTemplate::new(400).set_body_string("not json at all"))
        .mount(&server)
        .await;
    let err = client.hosts().query().send().await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("not json at all"), "{text}");
    assert!(
        !text.contains(ACCESS_TOKEN) && !text.contains(SECRET),
        "{text}"
    );
}

#[test]
fn from_env_reads_the_falcon_variables_and_names_what_is_missing() {
    use falcon_sdk::{Cloud, FalconClientBuilder};
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let err =
        FalconClientBuilder::from_env_with(env(&[("FALCON_CLIENT_SECRET", "s")])).unwrap_err();
    assert!(err.to_string().contains("FALCON_CLIENT_ID"), "{err}");
    let err = FalconClientBuilder::from_env_with(env(&[
        ("FALCON_CLIENT_ID", "id"),
        ("FALCON_CLIENT_SECRET", SECRET),
        ("FALCON_CLOUD", "mars-1"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("FALCON_CLOUD"), "{err}");
    assert!(!err.to_string().contains(SECRET));
    let client = FalconClientBuilder::from_env_with(env(&[
        ("FALCON_CLIENT_ID", "id"),
        ("FALCON_CLIENT_SECRET", SECRET),
        ("FALCON_CLOUD", "http://127.0.0.1:4010"),
        ("FALCON_MEMBER_CID", "child"),
    ]))
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(client.base_url().as_str(), "http://127.0.0.1:4010/");
    let client = FalconClientBuilder::from_env_with(env(&[
        ("FALCON_CLIENT_ID", "id"),
        ("FALCON_CLIENT_SECRET", SECRET),
        ("FALCON_CLOUD", "US-GOV-1"),
    ]))
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(
        client.base_url().host_str(),
        Some("api.laggar.gcw.crowdstrike.com")
    );
    assert_eq!("eu-1".parse::<Cloud>().unwrap(), Cloud::Eu1);
    assert_eq!("gov2".parse::<Cloud>().unwrap(), Cloud::UsGov2);
    assert_eq!("auto".parse::<Cloud>().unwrap(), Cloud::Auto);
}

#[test]
fn client_and_streams_can_cross_threads() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send_static<T: Send + 'static>(_: &T) {}
    let client = FalconClient::builder()
        .client_id("id")
        .client_secret(SecretString::from(SECRET))
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    send_sync_clone(&client);
    send_static(&client.hosts().scroll().devices());
    send_static(&client.hosts().scroll().ids());
    send_static(&client.iocs().combined().stream());
    send_static(&client.alerts().query().ids());
    send_static(&client.host_groups().members("g").devices());
    send_static(&client.iocs().create(Vec::new()).send());
}
