//! `http(s)://` media: the SSRF policy and the one HTTP client (reqwest).
//!
//! Every hop of a fetch (the URL and each redirect target) is checked the same way: the scheme
//! must be http(s), the host is resolved here, and unless the host is on the operator's
//! allow-list every resolved address must be public. The client is then pinned to exactly the
//! addresses that were checked (`resolve_to_addrs`), so a second DNS answer cannot swap in an
//! internal address between the check and the connect (DNS rebinding). Redirects are therefore
//! followed here, not by reqwest, which would resolve the new host itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use super::error::{MediaError, Result};
use super::MediaLimits;

/// Whether an address is one a media URL must not reach by default: loopback, unspecified,
/// private (RFC 1918, CGNAT, unique-local), link-local (cloud metadata lives at 169.254.169.254),
/// multicast, broadcast, documentation/benchmark and reserved ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    // IPv4 carried inside IPv6 (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96)
    // is judged by the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && !ip.is_unspecified()) {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return ip.is_loopback() || is_internal_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
}

/// Whether `host` (as the URL spells it, IPv6 without brackets) is on the allow-list: equal to
/// an entry, or a subdomain of one.
pub fn is_allowed_host(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let e = entry
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !e.is_empty() && (host == e || host.ends_with(&format!(".{e}")))
    })
}

fn http_error(url: &str, reason: &str, detail: impl std::fmt::Display) -> MediaError {
    MediaError::Http {
        url: url.chars().take(80).collect(),
        reason: reason.to_string(),
        detail: detail.to_string(),
    }
}

/// The addresses a hop may connect to, after the policy check.
async fn checked_addrs(url: &Url, limits: &MediaLimits) -> Result<(String, Vec<SocketAddr>)> {
    let host = url
        .host_str()
        .ok_or_else(|| MediaError::BadUrl("the URL has no host".into()))?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| MediaError::BadUrl("the URL has no port".into()))?;
    let allowed = is_allowed_host(&bare, &limits.allowed_media_domains);
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare.as_str(), port))
            .await
            .map_err(|e| MediaError::Unresolvable(format!("{bare}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(MediaError::Unresolvable(format!("{bare}: no addresses")));
    }
    // One internal address is enough to refuse: the client could pick any of them.
    if !allowed {
        if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
            return Err(MediaError::BlockedAddress(format!(
                "{bare} -> {}",
                bad.ip()
            )));
        }
    }
    Ok((bare, addrs))
}

/// Fetches `url` under `limits`: the SSRF policy on every hop, at most `max_redirects`
/// redirects, separate connect and read timeouts, `http_timeout` for the whole fetch, and the
/// `max_item_bytes` cap while reading.
pub async fn fetch(url: &str, limits: &MediaLimits) -> Result<Vec<u8>> {
    if !limits.allow_http {
        return Err(MediaError::RemoteDisabled);
    }
    match tokio::time::timeout(limits.http_timeout, fetch_hops(url, limits)).await {
        Ok(r) => r,
        Err(_) => Err(http_error(
            url,
            "no complete response in time",
            format!("whole-fetch timeout {:?}", limits.http_timeout),
        )),
    }
}

async fn fetch_hops(original: &str, limits: &MediaLimits) -> Result<Vec<u8>> {
    let mut url =
        Url::parse(original.trim()).map_err(|e| MediaError::BadUrl(format!("invalid URL: {e}")))?;
    let limit = limits.max_item_bytes;
    for _hop in 0..=limits.max_redirects {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaError::BadUrl(
                "a redirect leads to a URL that is not http(s)".into(),
            ));
        }
        let (host, addrs) = checked_addrs(&url, limits).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would make its own connection, bypassing the pinned addresses.
            .no_proxy()
            .connect_timeout(limits.http_connect_timeout)
            .read_timeout(limits.http_read_timeout);
        if host.parse::<IpAddr>().is_err() {
            builder = builder.resolve_to_addrs(&host, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| http_error(original, "the HTTP client could not start", e))?;
        let resp = client.get(url.clone()).send().await.map_err(|e| {
            // Refused, reset, timed out: one message, so that callers cannot map ports.
            http_error(original, "no response (connection failed or timed out)", e)
        })?;
        let status = resp.status();
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| url.join(loc).ok())
                .ok_or_else(|| http_error(original, "a redirect has no usable Location", status))?;
            url = next;
            continue;
        }
        if !status.is_success() {
            return Err(http_error(
                original,
                &format!("the server answered HTTP {}", status.as_u16()),
                status,
            ));
        }
        if let Some(len) = resp.content_length() {
            if len > limit {
                return Err(MediaError::TooLarge { size: len, limit });
            }
        }
        let mut resp = resp;
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http_error(original, "the response broke off", e))?
        {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(MediaError::TooLarge {
                    size: (buf.len() + chunk.len()) as u64,
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        return Ok(buf);
    }
    Err(http_error(
        original,
        &format!("more than {} redirects", limits.max_redirects),
        "redirect limit",
    ))
}

/// [`fetch`] for synchronous callers (the processor, `qwen3vl preprocess`): a private
/// current-thread runtime, on a scoped thread when the caller is already inside one (a runtime
/// cannot block on another from its own threads).
pub fn fetch_blocking(url: &str, limits: &MediaLimits) -> Result<Vec<u8>> {
    let run = || -> Result<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| http_error(url, "the HTTP client could not start", e))?;
        rt.block_on(fetch(url, limits))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(http_error(url, "the HTTP client failed", "thread panic")))
        })
    } else {
        run()
    }
}

/// Default connect timeout: a host that does not accept within this is not worth waiting for.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read timeout: the longest silence tolerated between bytes of a response.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn host_ip(u: &str) -> IpAddr {
        let url = Url::parse(u).unwrap();
        url.host_str()
            .unwrap()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .unwrap()
    }

    #[test]
    fn internal_ranges_in_every_spelling() {
        for u in [
            "http://127.0.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://100.64.0.1/",
        ] {
            assert!(is_internal(host_ip(u)), "{u}");
        }
        for u in [
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(!is_internal(host_ip(u)), "{u}");
        }
    }

    #[test]
    fn allow_list_matches_hosts_and_subdomains() {
        let allowed = vec!["example.com".to_string(), "[::1]".to_string()];
        assert!(is_allowed_host("example.com", &allowed));
        assert!(is_allowed_host("img.Example.com.", &allowed));
        assert!(is_allowed_host("::1", &allowed));
        assert!(!is_allowed_host("badexample.com", &allowed));
        assert!(!is_allowed_host("127.0.0.1", &allowed));
    }
}
