using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace XGenMM.Model.Modules;

/// <summary>
/// A module that only owns named parameters, for checkpoint sub-trees whose computation lives in the parent
/// (e.g. SigLIP's patch_embedding conv, used through the functional API).
/// </summary>
/// <remarks>Parents keep a reference to the holder, never to its parameters: TorchSharp registers Parameter-typed
/// fields of a module by reflection, so a parent field would register the same tensor a second time.</remarks>
public sealed class ParameterHolder(string name) : nn.Module(name)
{
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);

    public ParameterHolder Add(string parameterName, Tensor value)
    {
        var p = new Parameter(value);
        register_parameter(parameterName, p);
        _byName[parameterName] = p;
        return this;
    }

    public Parameter this[string parameterName] => _byName[parameterName];
}
