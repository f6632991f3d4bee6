mod helpers;
mod process;
mod rejects;
