global using Xunit;
// Every test project compiles tests/Shared (tests/Directory.Build.props).
global using XGenMM.Testing;
