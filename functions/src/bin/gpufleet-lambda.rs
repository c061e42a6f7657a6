//! The Lambda artifact of every gpufleet function: `GPUFLEET_FUNCTION` (set per function by
//! the template) says which one this is. See `functions::catalog` and `functions::routes`.

fn main() -> Result<(), lambda_runtime::Error> {
    functions::lambda::main()
}
