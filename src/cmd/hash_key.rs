//! `mcpgate hash-key`: a new API key and the config entry that holds its hash.

use crate::cli::HashKeyArgs;

pub(crate) fn hash_key(args: HashKeyArgs) -> anyhow::Result<()> {
    let (key, hash) = mcpgate::auth::api_keys::generate(&args.id).map_err(anyhow::Error::msg)?;
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|scopes| scopes.split_whitespace())
        .map(|scope| format!("{scope:?}"))
        .collect();
    println!("API key (give it to the client; mcpgate keeps only the hash):");
    println!("{key}");
    println!();
    println!("Entry for auth.api_keys:");
    println!("  - id: {}", args.id);
    println!("    hash: \"{hash}\"");
    println!("    scopes: [{}]", scopes.join(", "));
    Ok(())
}
