//! Servers that "boot" as lab hosts: a created server's `public_net.ipv4.ip`
//! is a loopback address on which the lab's real sshd listens, and once its
//! `start_server` action succeeded that address accepts the ssh keys the
//! server was created with, so a runbook can ssh into the server it made.
//!
//! The lab's sshd reads a separate `authorized_keys` file for each address
//! reserved for servers (`Match LocalAddress` in `sshd.rs`); this module
//! fills it when a server starts and empties it when the server goes.
//! Without reserved addresses (no sshd) servers get addresses from
//! 127.0.250.0/24, where nothing listens.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// An address the lab's sshd serves for servers, and the file it reads
/// the keys it accepts there from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSlot {
    pub address: Ipv4Addr,
    pub authorized_keys: PathBuf,
}

/// The addresses servers get.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    slots: Vec<HostSlot>,
    used: BTreeSet<Ipv4Addr>,
    next_spare: u8,
}

impl Hosts {
    pub(crate) fn new(slots: Vec<HostSlot>) -> Hosts {
        Hosts {
            slots,
            used: BTreeSet::new(),
            next_spare: 0,
        }
    }

    /// An address for a new server: a free sshd slot, else one where
    /// nothing listens.
    pub(crate) fn assign(&mut self) -> Ipv4Addr {
        let free = self
            .slots
            .iter()
            .map(|slot| slot.address)
            .find(|address| !self.used.contains(address));
        let address = free.unwrap_or_else(|| {
            self.next_spare = self.next_spare.wrapping_add(1).max(1);
            Ipv4Addr::new(127, 0, 250, self.next_spare)
        });
        self.used.insert(address);
        address
    }

    /// Let `keys` in at `address` (a booted server).
    pub(crate) fn authorize(&self, address: Ipv4Addr, keys: &[String]) {
        if let Some(slot) = self.slot(address) {
            let mut text = keys.join("\n");
            text.push('\n');
            // A failed write shows as a refused ssh login, which is what a
            // test of this would check.
            let _ = std::fs::write(&slot.authorized_keys, text);
        }
    }

    /// The server at `address` is gone: no key gets in any more.
    pub(crate) fn release(&mut self, address: Ipv4Addr) {
        if let Some(slot) = self.slot(address) {
            let _ = std::fs::write(&slot.authorized_keys, "");
        }
        self.used.remove(&address);
    }

    fn slot(&self, address: Ipv4Addr) -> Option<&HostSlot> {
        self.slots.iter().find(|slot| slot.address == address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_used_first_then_unserved_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        let mut hosts = Hosts::new(vec![HostSlot {
            address: Ipv4Addr::new(127, 0, 0, 9),
            authorized_keys: file.clone(),
        }]);
        let first = hosts.assign();
        assert_eq!(first, Ipv4Addr::new(127, 0, 0, 9));
        let second = hosts.assign();
        assert_eq!(second, Ipv4Addr::new(127, 0, 250, 1));
        hosts.authorize(first, &["ssh-ed25519 AAAA x".into()]);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "ssh-ed25519 AAAA x\n"
        );
        hosts.release(first);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
        assert_eq!(hosts.assign(), first);
    }
}
