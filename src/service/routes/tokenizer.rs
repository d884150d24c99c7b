//! `POST /v1/tokenizer`: `{"inputs": str, "do_decode": bool}` → `{"token_number": n, "tokens": [...]}`
//! (ids, or each token's text when `do_decode` is true).

use actix_web::web::Data;
use actix_web::HttpResponse;
use serde::Deserialize;

use crate::service::errors::ApiError;
use crate::service::params::{parse_body, Body};
use crate::service::sse;
use crate::service::state::AppState;
use crate::wire::mindie::{TokenList, Tokenized};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct TokenizeRequest {
    inputs: String,
    #[serde(default)]
    do_decode: Option<bool>,
}

/// A `/v1/tokenizer` request that passed the route's checks.
#[derive(Debug)]
pub struct TokenizeCall {
    pub inputs: String,
    pub do_decode: bool,
}

/// The route's body checks; free of server state so that the fuzz targets run exactly these.
pub fn validate(body: &[u8]) -> Result<TokenizeCall, ApiError> {
    let req: TokenizeRequest = parse_body(body)?;
    Ok(TokenizeCall {
        inputs: req.inputs,
        do_decode: req.do_decode.unwrap_or(false),
    })
}

pub async fn handle(state: Data<AppState>, Body(body): Body) -> Result<HttpResponse, ApiError> {
    let req = validate(&body)?;
    if state.is_stopping() {
        return Err(ApiError::unavailable("the server is stopping"));
    }
    let ids = state.encode(req.inputs).await?;
    let tokens = if req.do_decode {
        let tok = state.tokenizer()?;
        let texts: Vec<String> = ids
            .iter()
            .map(|&id| tok.decode(&[id], false).unwrap_or_default())
            .collect();
        TokenList::Texts(texts)
    } else {
        TokenList::Ids(ids.clone())
    };
    Ok(sse::json_of(&Tokenized {
        token_number: ids.len(),
        tokens,
    }))
}
