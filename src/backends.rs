//! Reaching MySQL and Redis the way New-API does: from its `SQL_DSN` and `REDIS_CONN_STRING`
//! (resolved from the cluster's ConfigMap/Secret), or from a URL the user gives. From outside the
//! cluster, an in-cluster host (a Service name) is reached through a port-forward to one of the
//! role's pods; inside the cluster, directly.

use std::fmt;

use crate::envvars::Sensitive;

/// Where and as whom to connect. The password is [`Sensitive`]: never printed.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Sensitive>,
    /// MySQL database, or Redis DB number.
    pub database: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Endpoint {
    /// `user@host:port/db`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        if let Some(db) = &self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl Endpoint {
    /// Whether the host names something inside the cluster (a Service), which from outside can
    /// only be reached through a port-forward.
    pub fn in_cluster_host(&self) -> bool {
        let h = self.host.as_str();
        !h.contains('.') && h != "localhost"
            || h.ends_with(".svc")
            || h.ends_with(".svc.cluster.local")
            || h.contains(".svc.")
    }

    /// The same endpoint at another address (the local end of a port-forward).
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }

    pub fn mysql_opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(self.user.clone())
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(self.database.clone())
            .prefer_socket(false)
            .into()
    }

    pub fn redis_info(&self) -> redis::ConnectionInfo {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(db) = self.database.as_ref().and_then(|d| d.parse::<i64>().ok()) {
            redis = redis.set_db(db);
        }
        if let Some(u) = &self.user {
            redis = redis.set_username(u.clone());
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p.expose());
        }
        use redis::IntoConnectionInfo as _;
        match redis::ConnectionAddr::Tcp(self.host.clone(), self.port).into_connection_info() {
            Ok(info) => info.set_redis_settings(redis),
            Err(e) => unreachable!("a TCP address always converts: {e}"),
        }
    }
}

/// Why a DSN or URL was refused (never quoting the secret part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub reason: String,
}

/// Parses Go's MySQL DSN, as New-API's `SQL_DSN`: `user:password@tcp(host:port)/dbname?params`.
pub fn parse_go_dsn(dsn: &str) -> Result<Endpoint, ParseError> {
    let err = |reason: &str| ParseError {
        what: "SQL_DSN",
        reason: reason.to_string(),
    };
    let (creds, rest) = dsn.rsplit_once('@').unwrap_or(("", dsn));
    let (user, password) = match creds.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (creds, None),
    };
    let (addr_part, db_part) = rest
        .split_once('/')
        .ok_or_else(|| err("no /dbname after the address"))?;
    let addr = if let Some(inner) = addr_part.strip_prefix("tcp(") {
        inner
            .strip_suffix(')')
            .ok_or_else(|| err("unclosed tcp( in the address"))?
    } else if addr_part.is_empty() {
        "127.0.0.1:3306"
    } else if addr_part.starts_with("unix(") {
        return Err(err("a unix socket address cannot be reached from here"));
    } else {
        addr_part
    };
    let (host, port) = split_host_port(addr, 3306).map_err(|r| err(&r))?;
    let db = db_part.split('?').next().unwrap_or("");
    Ok(Endpoint {
        host,
        port,
        user: (!user.is_empty()).then(|| user.to_string()),
        password: password.map(Sensitive::new),
        database: (!db.is_empty()).then(|| db.to_string()),
    })
}

/// Parses `mysql://user:pass@host:port/db` or `redis://[user][:pass]@host:port[/db]`.
pub fn parse_url(
    url: &str,
    scheme: &'static str,
    default_port: u16,
) -> Result<Endpoint, ParseError> {
    let err = |reason: String| ParseError {
        what: scheme,
        reason,
    };
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .or_else(|| {
            (scheme == "redis")
                .then(|| url.strip_prefix("rediss://"))
                .flatten()
        })
        .ok_or_else(|| err(format!("expected {scheme}://host:port")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (creds, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = match creds.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (creds, None),
    };
    let (host, port) = split_host_port(hostport, default_port).map_err(err)?;
    let db = path.split('?').next().unwrap_or("");
    Ok(Endpoint {
        host,
        port,
        user: (!user.is_empty()).then(|| percent_decode(user)),
        password: password
            .filter(|p| !p.is_empty())
            .map(|p| Sensitive::new(percent_decode(p))),
        database: (!db.is_empty()).then(|| db.to_string()),
    })
}

fn split_host_port(addr: &str, default_port: u16) -> Result<(String, u16), String> {
    if addr.is_empty() {
        return Err("no host".into());
    }
    match addr.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => {
            Ok((addr.to_string(), default_port))
        }
        Some((h, p)) => {
            let port = p.parse().map_err(|_| format!("bad port {p:?}"))?;
            Ok((
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                port,
            ))
        }
        None => Ok((addr.to_string(), default_port)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dsn_of_the_seed() {
        let e = parse_go_dsn("root:123456@tcp(mysql:3306)/new-api?parseTime=true").unwrap();
        assert_eq!(e.to_string(), "root@mysql:3306/new-api");
        assert_eq!(e.password.as_ref().unwrap().expose(), "123456");
        assert!(e.in_cluster_host());
        assert!(!format!("{e:?}").contains("123456"));
        let e = parse_go_dsn("u:p@tcp(db.example.com)/x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("db.example.com", 3306));
        assert!(!e.in_cluster_host());
        assert!(parse_go_dsn("u:p@unix(/tmp/s)/x").is_err());
        assert!(parse_go_dsn("garbage").is_err());
        assert!(parse_go_dsn("u:p@tcp(h:notaport)/d").is_err());
        assert!(
            parse_go_dsn("u:p@tcp(mysql.new-api.svc.cluster.local:3306)/d")
                .unwrap()
                .in_cluster_host()
        );
    }

    #[test]
    fn urls() {
        let r = parse_url("redis://redis:6379", "redis", 6379).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.password.is_none()),
            ("redis", 6379, true)
        );
        let r = parse_url("redis://:s%40cret@10.0.0.5:6380/2", "redis", 6379).unwrap();
        assert_eq!(r.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(r.database.as_deref(), Some("2"));
        let m = parse_url("mysql://root:pw@127.0.0.1:3307/new-api", "mysql", 3306).unwrap();
        assert_eq!(m.to_string(), "root@127.0.0.1:3307/new-api");
        assert!(parse_url("http://x", "mysql", 3306).is_err());
    }
}
