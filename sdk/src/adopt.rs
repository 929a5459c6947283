//! The `adopt` edit (units just copied in from another repository): the
//! rule most content types need, that a copied unit replaces the units of
//! the repository that share its name (a tag, a file path) but not its key.

use crate::host::Host;
use crate::{Error, Unit, UnitRef};

/// Remove, for every adopted unit of `unit_type`, the units `same_name`
/// finds for it that were not adopted themselves; returns how many went.
/// An adopted unit the repository does not hold is `not-found`.
pub fn replace_namesakes<H: Host + ?Sized>(
    host: &mut H,
    adopted: &[UnitRef],
    unit_type: &str,
    mut same_name: impl FnMut(&mut H, &Unit) -> Result<Vec<Unit>, Error>,
) -> Result<u64, Error> {
    let is_adopted = |key: &str| {
        adopted
            .iter()
            .any(|a| a.unit_type == unit_type && a.key == key)
    };
    let mut removed = 0;
    for a in adopted.iter().filter(|a| a.unit_type == unit_type) {
        let unit = host.get_unit(unit_type, &a.key)?.ok_or_else(|| {
            Error::not_found(format!(
                "{unit_type} {} was to be adopted but the repository does not hold it",
                a.key
            ))
        })?;
        for other in same_name(host, &unit)? {
            if !is_adopted(&other.key) && host.remove_unit(unit_type, &other.key)? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}
