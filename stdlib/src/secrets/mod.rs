//! `secrets::*`: making new secret values (rotation).

use rand::Rng;
use rhai::Dynamic;

use crate::function;
use crate::function::Function;

const ALPHANUMERIC: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &str = "0123456789abcdef";
const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SYMBOLS: &str = "!#%+,-.:=@^_~";

pub(crate) fn functions() -> Vec<Function> {
    vec![function! {
        /// Generate a random secret from the OS's secure generator. Options:
        /// `length` (default 32), `charset`: "alphanumeric" (default), "hex",
        /// "base64url", "symbols" (alphanumeric plus shell-safe punctuation), or
        /// a string of the allowed characters. Prints as `***`.
        ///
        /// ```rhai
        /// let password = secrets::generate(#{length: 40, charset: "hex"});
        /// assert(password.len() == 40, "wrong length");
        /// ```
        local fn secrets::generate("opts?: map") -> "secret"
        |call| {
            let options = call.options(0, &["length", "charset"])?;
            let length = options.int("length")?.unwrap_or(32);
            let length = usize::try_from(length)
                .ok()
                .filter(|length| (1..=4096).contains(length))
                .ok_or_else(|| call.bad_arg(0, format!("`length` must be between 1 and 4096, got {length}")))?;
            let charset = options.string("charset")?.unwrap_or_else(|| "alphanumeric".into());
            let symbols;
            let alphabet: &str = match charset.as_str() {
                "alphanumeric" => ALPHANUMERIC,
                "hex" => HEX,
                "base64url" => BASE64URL,
                "symbols" => {
                    symbols = format!("{ALPHANUMERIC}{SYMBOLS}");
                    &symbols
                }
                custom if custom.chars().count() >= 2 => custom,
                other => {
                    return Err(call
                        .bad_arg(0, format!("`charset` `{other}` is not alphanumeric, hex, base64url, symbols or a string of at least 2 characters"))
                        .into());
                }
            };
            let chars: Vec<char> = alphabet.chars().collect();
            let mut rng = rand::rng();
            let text: String = (0..length).map(|_| chars[rng.random_range(0..chars.len())]).collect();
            Ok(Dynamic::from(call.secret(text)))
        }
    }]
}
