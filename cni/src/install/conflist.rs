//! Editing someone else's network configuration: only the `plugins` list changes; every other
//! field keeps its text and its place. A single-plugin `.conf` becomes a list of itself and us.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::netconf::{PLUGIN_TYPE, PluginConf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("neither a conflist (no \"plugins\" list) nor a single plugin (no \"type\")")]
    NotANetworkConfig,
}

/// A parsed network configuration file.
#[derive(Debug)]
pub struct NetworkConfig {
    fields: Object,
    /// The `plugins` list; a single-plugin config is a list of itself.
    plugins: Vec<Box<RawValue>>,
    single: bool,
}

/// Our entry in a configuration: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurEntry {
    pub index: usize,
    pub conf: PluginConf,
    /// Exactly `conf` (nothing added by someone else), so rewriting would change nothing.
    pub exact: bool,
}

impl NetworkConfig {
    pub fn parse(text: &str) -> Result<NetworkConfig, Error> {
        let fields: Object = serde_json::from_str(text)?;
        if let Some(plugins) = fields.get("plugins") {
            let plugins = serde_json::from_str(plugins.get())?;
            return Ok(NetworkConfig {
                fields,
                plugins,
                single: false,
            });
        }
        if fields.get("type").is_none() {
            return Err(Error::NotANetworkConfig);
        }
        let whole = RawValue::from_string(text.trim().to_owned())?;
        Ok(NetworkConfig {
            fields,
            plugins: vec![whole],
            single: true,
        })
    }

    /// The `cniVersion` the runtime will call the plugins with; libcni reads a missing one as
    /// 0.1.0.
    pub fn cni_version(&self) -> String {
        self.fields
            .get("cniVersion")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            .unwrap_or_else(|| "0.1.0".into())
    }

    /// A single-plugin config (`.conf`), which gets converted to a list when we join it.
    pub fn is_single(&self) -> bool {
        self.single
    }

    #[cfg(test)]
    pub fn plugin_count(&self) -> usize {
        self.plugins.len()
    }

    /// The ferrule-cni entry, if there is one.
    pub fn ours(&self) -> Option<OurEntry> {
        self.plugins.iter().enumerate().find_map(|(index, raw)| {
            let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            if value.get("type")?.as_str()? != PLUGIN_TYPE {
                return None;
            }
            let conf: PluginConf = serde_json::from_value(value.clone()).ok()?;
            let exact = serde_json::to_value(&conf).ok()? == value;
            Some(OurEntry { index, conf, exact })
        })
    }

    /// The text of the list with `ours` in place of our old entry, or appended. A single
    /// plugin becomes `{"cniVersion", "name", "plugins": [itself, ours]}` (the way istio-cni
    /// converts); the plugin object stays whole, so [`Self::without_ours`] can give it back.
    pub fn with_ours(&self, ours: &PluginConf) -> Result<String, Error> {
        let entry = RawValue::from_string(serde_json::to_string(ours)?)?;
        let mut plugins = self.plugins.clone();
        match self.ours() {
            Some(old) => plugins[old.index] = entry,
            None => plugins.push(entry),
        }
        let fields = match self.single {
            false => self.fields.clone(),
            true => {
                let mut list = Object::default();
                let name = self.fields.get("name").map(RawValue::to_owned);
                let name = name.unwrap_or(RawValue::from_string("\"k8s-pod-network\"".into())?);
                if let Some(version) = self.fields.get("cniVersion") {
                    list.0.push(("cniVersion".into(), version.to_owned()));
                }
                list.0.push(("name".into(), name));
                list
            }
        };
        render(fields, plugins)
    }

    /// The text without our entry. `Unconverted` when the list is exactly what converting a
    /// single-plugin config made (that plugin and ours, which names the file it came from):
    /// the original plugin's text.
    pub fn without_ours(&self) -> Result<Removed, Error> {
        let Some(old) = self.ours() else {
            return Ok(Removed::NotThere);
        };
        let mut plugins = self.plugins.clone();
        plugins.remove(old.index);
        let original = old.conf.converted_from.filter(|name| is_plain_name(name));
        if let (Some(original), [only]) = (original, plugins.as_slice()) {
            return Ok(Removed::Unconverted {
                original,
                text: format!("{}\n", only.get()),
            });
        }
        Ok(Removed::List(render(self.fields.clone(), plugins)?))
    }
}

/// A file name in the same directory, not a path out of it.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// What removing our entry leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    NotThere,
    List(String),
    /// Write `text` back as the file `original` and drop the list.
    Unconverted {
        original: String,
        text: String,
    },
}

/// `fields` with `plugins` replaced (or added last), pretty printed.
fn render(mut fields: Object, plugins: Vec<Box<RawValue>>) -> Result<String, Error> {
    let plugins = RawValue::from_string(plugins_text(&plugins))?;
    match fields.0.iter_mut().find(|(k, _)| k == "plugins") {
        Some((_, value)) => *value = plugins,
        None => fields.0.push(("plugins".into(), plugins)),
    }
    Ok(serde_json::to_string_pretty(&fields)? + "\n")
}

fn plugins_text(plugins: &[Box<RawValue>]) -> String {
    let items: Vec<&str> = plugins.iter().map(|p| p.get()).collect();
    format!("[\n    {}\n  ]", items.join(",\n    "))
}

/// A JSON object whose members keep their order and their exact text.
#[derive(Debug, Clone, Default)]
struct Object(Vec<(String, Box<RawValue>)>);

impl Object {
    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Object(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests;
