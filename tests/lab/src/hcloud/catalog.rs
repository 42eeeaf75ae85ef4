//! What every lab project offers and nobody creates: locations,
//! datacenters, server types and system images, in the shapes of
//! `GET /locations`, `/datacenters`, `/server_types` and `/images`.
//!
//! A small, fixed subset of Hetzner's real catalogue (names and sizes as
//! the real API lists them), enough for `hcloud server create --type cx22
//! --image debian-12 --location fsn1` and the Python library's lookups.

use serde_json::{Value, json};

/// One location as the catalogue lists it.
struct LocationRow {
    id: u64,
    name: &'static str,
    description: &'static str,
    city: &'static str,
    country: &'static str,
    latitude: f64,
    longitude: f64,
}

const LOCATIONS: &[LocationRow] = &[
    LocationRow {
        id: 1,
        name: "fsn1",
        description: "Falkenstein DC Park 1",
        city: "Falkenstein",
        country: "DE",
        latitude: 50.47612,
        longitude: 12.370071,
    },
    LocationRow {
        id: 2,
        name: "nbg1",
        description: "Nuremberg DC Park 1",
        city: "Nuremberg",
        country: "DE",
        latitude: 49.452102,
        longitude: 11.076665,
    },
    LocationRow {
        id: 3,
        name: "hel1",
        description: "Helsinki DC Park 1",
        city: "Helsinki",
        country: "FI",
        latitude: 60.169855,
        longitude: 24.938379,
    },
];

/// `(id, name, location name)`: one datacenter per location.
const DATACENTERS: &[(u64, &str, &str)] = &[
    (4, "fsn1-dc14", "fsn1"),
    (2, "nbg1-dc3", "nbg1"),
    (3, "hel1-dc2", "hel1"),
];

/// One server type: cores, memory and disk in GB, monthly net price in EUR.
struct ServerTypeRow {
    id: u64,
    name: &'static str,
    cores: u32,
    memory: f64,
    disk: u32,
    cpu_type: &'static str,
    architecture: &'static str,
    monthly: &'static str,
}

const SERVER_TYPES: &[ServerTypeRow] = &[
    ServerTypeRow {
        id: 104,
        name: "cx22",
        cores: 2,
        memory: 4.0,
        disk: 40,
        cpu_type: "shared",
        architecture: "x86",
        monthly: "3.79",
    },
    ServerTypeRow {
        id: 105,
        name: "cx32",
        cores: 4,
        memory: 8.0,
        disk: 80,
        cpu_type: "shared",
        architecture: "x86",
        monthly: "6.80",
    },
    ServerTypeRow {
        id: 22,
        name: "cpx11",
        cores: 2,
        memory: 2.0,
        disk: 40,
        cpu_type: "shared",
        architecture: "x86",
        monthly: "4.35",
    },
    ServerTypeRow {
        id: 45,
        name: "cax11",
        cores: 2,
        memory: 4.0,
        disk: 40,
        cpu_type: "shared",
        architecture: "arm",
        monthly: "3.79",
    },
    ServerTypeRow {
        id: 96,
        name: "ccx13",
        cores: 2,
        memory: 8.0,
        disk: 80,
        cpu_type: "dedicated",
        architecture: "x86",
        monthly: "12.49",
    },
];

/// `(id, name, description, os flavor, os version, architecture)`.
const IMAGES: &[(u64, &str, &str, &str, &str, &str)] = &[
    (114_690_387, "debian-12", "Debian 12", "debian", "12", "x86"),
    (114_690_389, "debian-12", "Debian 12", "debian", "12", "arm"),
    (
        161_547_269,
        "ubuntu-24.04",
        "Ubuntu 24.04",
        "ubuntu",
        "24.04",
        "x86",
    ),
    (
        161_547_270,
        "ubuntu-24.04",
        "Ubuntu 24.04",
        "ubuntu",
        "24.04",
        "arm",
    ),
];

/// The location a server lands in when the request names none.
pub(crate) const DEFAULT_LOCATION: &str = "fsn1";

pub(crate) fn locations() -> Vec<Value> {
    LOCATIONS
        .iter()
        .map(|location| {
            json!({
                "id": location.id, "name": location.name, "description": location.description,
                "city": location.city, "country": location.country, "network_zone": "eu-central",
                "latitude": location.latitude, "longitude": location.longitude,
            })
        })
        .collect()
}

pub(crate) fn datacenters() -> Vec<Value> {
    let all_types: Vec<u64> = SERVER_TYPES.iter().map(|row| row.id).collect();
    DATACENTERS
        .iter()
        .filter_map(|(id, name, location)| {
            Some(json!({
                "id": id, "name": name,
                "description": format!("{} virtual DC", location_by_name(location)?["city"].as_str()?),
                "location": location_by_name(location)?,
                "server_types": {
                    "supported": all_types, "available": all_types,
                    "available_for_migration": all_types,
                },
            }))
        })
        .collect()
}

pub(crate) fn server_types() -> Vec<Value> {
    SERVER_TYPES
        .iter()
        .map(|row| {
            let prices: Vec<Value> = LOCATIONS
                .iter()
                .map(|location| {
                    json!({
                        "location": location.name,
                        "price_hourly": {"net": "0.0060", "gross": "0.0071"},
                        "price_monthly": {"net": row.monthly, "gross": row.monthly},
                        "included_traffic": 21_990_232_555_520_u64,
                        "price_per_tb_traffic": {"net": "1.00", "gross": "1.19"},
                    })
                })
                .collect();
            let locations: Vec<Value> = LOCATIONS
                .iter()
                .map(|location| {
                    json!({
                        "id": location.id, "name": location.name, "deprecation": null,
                        "available": true, "recommended": location.name == DEFAULT_LOCATION,
                    })
                })
                .collect();
            json!({
                "id": row.id, "name": row.name, "description": row.name.to_uppercase(),
                "category": "regular_purpose",
                "cores": row.cores, "memory": row.memory, "disk": row.disk, "storage_type": "local",
                "cpu_type": row.cpu_type, "architecture": row.architecture,
                "included_traffic": 21_990_232_555_520_u64,
                "deprecated": false, "deprecation": null,
                "prices": prices, "locations": locations,
            })
        })
        .collect()
}

pub(crate) fn images() -> Vec<Value> {
    IMAGES
        .iter()
        .map(|(id, name, description, flavor, version, architecture)| {
            json!({
                "id": id, "type": "system", "status": "available", "name": name,
                "description": description, "image_size": null, "disk_size": 5,
                "created": "2024-01-01T00:00:00+00:00", "created_from": null,
                "bound_to": null, "os_flavor": flavor, "os_version": version,
                "architecture": architecture, "rapid_deploy": true,
                "protection": {"delete": false}, "deprecated": null, "deleted": null,
                "labels": {},
            })
        })
        .collect()
}

pub(crate) fn location_by_name(name: &str) -> Option<Value> {
    locations()
        .into_iter()
        .find(|location| location["name"] == name)
}

/// The datacenter of a location (the deprecated `server.datacenter`, which
/// older clients such as hcloud-cli 1.30 still read).
pub(crate) fn datacenter_of(location: &str) -> Option<Value> {
    datacenters()
        .into_iter()
        .find(|datacenter| datacenter["location"]["name"] == location)
}

/// A catalogue entry by ID (a JSON number or a digit string) or by name.
pub(crate) fn find(entries: Vec<Value>, id_or_name: &Value) -> Option<Value> {
    let wanted = match id_or_name {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        _ => return None,
    };
    entries.into_iter().find(|entry| {
        entry["id"]
            .as_u64()
            .is_some_and(|id| wanted.parse() == Ok(id))
            || entry["name"] == wanted.as_str()
    })
}

/// An image by ID or name, for a server type's architecture.
pub(crate) fn image_for(id_or_name: &Value, architecture: &str) -> Option<Value> {
    let candidates: Vec<Value> = images()
        .into_iter()
        .filter(|image| image["architecture"] == architecture || id_or_name.is_number())
        .collect();
    find(candidates, id_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_images_and_locations_are_found_by_id_or_name() {
        assert_eq!(find(server_types(), &json!("cx22")).unwrap()["id"], 104);
        assert_eq!(find(server_types(), &json!(45)).unwrap()["name"], "cax11");
        assert_eq!(find(server_types(), &json!("104")).unwrap()["name"], "cx22");
        assert!(find(server_types(), &json!("cx99")).is_none());
        assert_eq!(
            image_for(&json!("debian-12"), "arm").unwrap()["id"],
            114_690_389
        );
        assert_eq!(datacenter_of("nbg1").unwrap()["name"], "nbg1-dc3");
        assert_eq!(datacenters().len(), LOCATIONS.len());
    }
}
