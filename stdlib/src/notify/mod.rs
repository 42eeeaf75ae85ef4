//! `notify::*`: tell people what a run did (webhooks, Slack).

use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::function;
use crate::function::Function;
use crate::http::{Request, send};

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// POST `payload` as JSON to a webhook URL (a string, or a secret when
            /// the URL carries a token). Not run in a dry-run.
            ///
            /// ```rhai
            /// notify::webhook("http://127.0.0.1:9/hooks/deploys", #{text: "deployed v2"});
            /// ```
            write fn notify::webhook("url: string | secret", "payload: map | string") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| {
                let url = call.text(0)?;
                let request = Request {
                    method: reqwest::Method::POST,
                    url: url.expose(),
                    headers: Vec::new(),
                    body: Some(call.arg(1)),
                    timeout: Duration::from_secs(15),
                    connect_timeout: crate::http::CONNECT_TIMEOUT,
                    expect: Vec::new(),
                };
                Ok(call.block_on(send(request))?)
            }
        },
        function! {
            /// Post `text` to Slack through the incoming-webhook URL held in the
            /// context's secret `slack_webhook` (e.g. `slack_webhook = "env:SLACK_WEBHOOK"`).
            ///
            /// ```rhai
            /// notify::slack("backup finished");
            /// ```
            write fn notify::slack("text: string") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| {
                let text = call.string(0)?;
                let url = call.host.secret("slack_webhook")?;
                let mut payload = Map::new();
                payload.insert("text".into(), text.into());
                let request = Request {
                    method: reqwest::Method::POST,
                    url: url.expose(),
                    headers: Vec::new(),
                    body: Some(Dynamic::from_map(payload)),
                    timeout: Duration::from_secs(15),
                    connect_timeout: crate::http::CONNECT_TIMEOUT,
                    expect: Vec::new(),
                };
                Ok(call.block_on(send(request))?)
            }
        },
    ]
}
