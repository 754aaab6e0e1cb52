//! `prevResult`: the previous plugin's result, which a chained plugin reads the pod's IPs from
//! and passes on, converted to the configuration's `cniVersion` as libcni converts results.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use crate::version;

/// The previous plugin's result and the version it is written in.
#[derive(Debug, Clone, PartialEq)]
pub struct PrevResult {
    value: Value,
    version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("prevResult is not a JSON object")]
    NotAnObject,
    #[error("prevResult is not a CNI result: {0}")]
    Shape(#[from] serde_json::Error),
    #[error("prevResult has cniVersion {0:?}, which is not supported")]
    UnsupportedVersion(String),
    #[error("prevResult has an IP address {0:?} that is not an address/prefix")]
    BadAddress(String),
}

/// The fields of a result we read (0.3.0 through 1.1.0 agree on them).
#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

impl PrevResult {
    /// `value` is the `prevResult` object; a result without `cniVersion` is taken to be in the
    /// configuration's version `conf_version`.
    pub fn parse(value: Value, conf_version: &str) -> Result<PrevResult, Error> {
        let Value::Object(ref object) = value else {
            return Err(Error::NotAnObject);
        };
        let version = match object.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            _ => conf_version.to_owned(),
        };
        if !version::is_supported(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let result = PrevResult { value, version };
        result.ips()?;
        Ok(result)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The pod's addresses: every IP except those on an interface outside the sandbox (the
    /// host side of a veth, a bridge), in result order, without duplicates.
    pub fn ips(&self) -> Result<Vec<IpAddr>, Error> {
        let shape = Shape::deserialize(&self.value)?;
        let mut ips = Vec::new();
        for ip in &shape.ips {
            let on_host = ip
                .interface
                .and_then(|i| shape.interfaces.get(i))
                .is_some_and(|i| i.sandbox.is_empty());
            if on_host {
                continue;
            }
            let addr = address(&ip.address)?;
            if !ips.contains(&addr) {
                ips.push(addr);
            }
        }
        Ok(ips)
    }

    /// The result in `target` version: 1.x results have no `version` on each IP, 0.3.x/0.4.0
    /// results need it.
    pub fn convert_to(&self, target: &str) -> Result<Value, Error> {
        if !version::is_supported(target) {
            return Err(Error::UnsupportedVersion(target.to_owned()));
        }
        let mut value = self.value.clone();
        let object = value.as_object_mut().ok_or(Error::NotAnObject)?;
        match (version::is_v1(&self.version), version::is_v1(target)) {
            (false, true) => for_each_ip(object, |ip| {
                ip.remove("version");
                Ok(())
            })?,
            (true, false) => for_each_ip(object, |ip| {
                let family = match ip.get("address").and_then(Value::as_str).map(address) {
                    Some(Ok(IpAddr::V4(_))) => "4",
                    Some(Ok(IpAddr::V6(_))) => "6",
                    Some(Err(e)) => return Err(e),
                    None => return Err(Error::BadAddress(String::new())),
                };
                ip.insert("version".into(), family.into());
                Ok(())
            })?,
            _ => {}
        }
        object.insert("cniVersion".into(), target.into());
        Ok(value)
    }
}

fn for_each_ip(
    result: &mut serde_json::Map<String, Value>,
    mut f: impl FnMut(&mut serde_json::Map<String, Value>) -> Result<(), Error>,
) -> Result<(), Error> {
    let ips = result.get_mut("ips").and_then(Value::as_array_mut);
    for ip in ips.into_iter().flatten().filter_map(Value::as_object_mut) {
        f(ip)?;
    }
    Ok(())
}

/// `10.1.2.3/24` → `10.1.2.3`.
fn address(cidr: &str) -> Result<IpAddr, Error> {
    let ip = cidr.split_once('/').map_or(cidr, |(ip, _)| ip);
    ip.parse().map_err(|_| Error::BadAddress(cidr.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the bridge plugin returns: the bridge, the host veth, the pod's eth0.
    fn bridge_result(version: &str, with_ip_version: bool) -> Value {
        let mut v4 = json!({"interface": 2, "address": "10.22.0.5/16", "gateway": "10.22.0.1"});
        let mut v6 = json!({"interface": 2, "address": "fd00:22::5/64"});
        if with_ip_version {
            v4["version"] = "4".into();
            v6["version"] = "6".into();
        }
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/var/run/netns/p1"}
            ],
            "ips": [v4, v6, {"interface": 0, "address": "10.22.0.1/16"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        })
    }

    #[test]
    fn reads_the_pod_ips_and_skips_host_interfaces() {
        for (version, with) in [
            ("0.3.1", true),
            ("0.4.0", true),
            ("1.0.0", false),
            ("1.1.0", false),
        ] {
            let result = PrevResult::parse(bridge_result(version, with), "1.0.0").unwrap();
            let ips: Vec<String> = result
                .ips()
                .unwrap()
                .iter()
                .map(|ip| ip.to_string())
                .collect();
            assert_eq!(ips, ["10.22.0.5", "fd00:22::5"], "version {version}");
        }
    }

    #[test]
    fn ips_without_interface_index_count() {
        let result =
            PrevResult::parse(json!({"ips": [{"address": "10.0.0.9/32"}]}), "1.0.0").unwrap();
        assert_eq!(
            result.version(),
            "1.0.0",
            "missing cniVersion is the config's"
        );
        assert_eq!(
            result.ips().unwrap(),
            ["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn converts_0_4_to_1_0_by_dropping_ip_versions() {
        let result = PrevResult::parse(bridge_result("0.4.0", true), "1.0.0").unwrap();
        assert_eq!(
            result.convert_to("1.0.0").unwrap(),
            bridge_result("1.0.0", false)
        );
    }

    #[test]
    fn converts_1_0_to_0_3_1_by_adding_ip_versions() {
        let result = PrevResult::parse(bridge_result("1.0.0", false), "1.0.0").unwrap();
        let mut expected = bridge_result("0.3.1", true);
        expected["ips"][2]["version"] = "4".into();
        assert_eq!(result.convert_to("0.3.1").unwrap(), expected);
    }

    #[test]
    fn same_family_only_changes_the_version() {
        let result = PrevResult::parse(bridge_result("1.0.0", false), "1.1.0").unwrap();
        assert_eq!(
            result.convert_to("1.1.0").unwrap(),
            bridge_result("1.1.0", false)
        );
        assert_eq!(
            result.convert_to("1.0.0").unwrap(),
            bridge_result("1.0.0", false)
        );
    }

    #[test]
    fn rejects_what_is_not_a_result() {
        assert!(matches!(
            PrevResult::parse(json!([]), "1.0.0"),
            Err(Error::NotAnObject)
        ));
        assert!(matches!(
            PrevResult::parse(json!({"cniVersion": "0.2.0"}), "1.0.0"),
            Err(Error::UnsupportedVersion(_))
        ));
        let err = PrevResult::parse(json!({"ips": [{"address": "nope/8"}]}), "1.0.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "prevResult has an IP address \"nope/8\" that is not an address/prefix"
        );
    }
}
