global using Xunit;
global using XGenMM.Gateway.Contracts;
