import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

/** Integers, integer lists and strings; floats are wrapped so 1.0 stays a float. */
export type AttributeValue = number | number[] | string | { float: number };
export type ElementType = "float32" | "float16" | "int64" | "int32" | "uint8";
/** What weights are stored as: float32, or uint8 (packed quantized codes and zero points). */
export type WeightElementType = "float32" | "uint8";

const ELEMENT_TYPES: Record<ElementType, number> = {
  uint8: onnx.TensorProto.DataType.UINT8,
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
};

/** A dimension: a fixed size or a symbolic name. */
export type Dim = number | string;

/**
 * A small builder for ONNX graphs: named values, nodes with attributes,
 * initializers. It hides protobuf details from the model definition.
 */
export class OnnxGraph {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private counter = 0;

  /** Nodes so far; handy for unique initializer names. */
  opCount(): number {
    return this.counter;
  }

  input(name: string, type: ElementType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(value: string, name: string, type: ElementType, dims: Dim[]): void {
    this.op("Identity", [value], {}, name);
    this.outputs.push(valueInfo(name, type, dims));
  }

  floats(name: string, dims: number[], data: Float32Array | number[]): string {
    this.initializers.push(
      onnx.TensorProto.create({ name, dims, dataType: ELEMENT_TYPES.float32, rawData: toBytes(Float32Array.from(data)) }),
    );
    return name;
  }

  bytes(name: string, dims: number[], data: Uint8Array): string {
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: ELEMENT_TYPES.uint8, rawData: data }));
    return name;
  }

  /**
   * An initializer stored in a file beside the model (`location`, relative to
   * the .onnx file): onnxruntime reads it from there, so it never passes through JS.
   */
  externalTensor(name: string, dims: number[], type: WeightElementType, location: string, offset: number, length: number): string {
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims,
        dataType: ELEMENT_TYPES[type],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: location },
          { key: "offset", value: String(offset) },
          { key: "length", value: String(length) },
        ],
      }),
    );
    return name;
  }

  ints(name: string, data: number[]): string {
    const values = BigInt64Array.from(data.map(BigInt));
    this.initializers.push(
      onnx.TensorProto.create({ name, dims: [data.length], dataType: ELEMENT_TYPES.int64, rawData: toBytes(values) }),
    );
    return name;
  }

  /** Adds a node and returns the name of its (first) output. */
  op(type: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, output?: string, domain = ""): string {
    return this.opMulti(type, inputs, 1, attributes, output ? [output] : undefined, domain)[0];
  }

  /** Adds a node with several outputs. */
  opMulti(
    type: string,
    inputs: string[],
    outputCount: number,
    attributes: Record<string, AttributeValue> = {},
    outputNames?: string[],
    domain = "",
  ): string[] {
    const id = `${type}_${this.counter++}`;
    const outputs = outputNames ?? Array.from({ length: outputCount }, (_, i) => `${id}_out${i}`);
    this.nodes.push(
      onnx.NodeProto.create({
        name: id,
        opType: type,
        domain,
        input: inputs,
        output: outputs,
        attribute: Object.entries(attributes).map(([name, value]) => attribute(name, value)),
      }),
    );
    return outputs;
  }

  /** Serialises the graph as an ONNX model. */
  encode(name: string, opsets: Record<string, number>): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 10,
      producerName: "kvwarden",
      opsetImport: Object.entries(opsets).map(([domain, version]) => onnx.OperatorSetIdProto.create({ domain, version })),
      graph: onnx.GraphProto.create({
        name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, type: ElementType, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: ELEMENT_TYPES[type],
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })),
        }),
      }),
    }),
  });
}

function attribute(name: string, value: AttributeValue) {
  const { AttributeType } = onnx.AttributeProto;
  if (typeof value === "string") {
    return onnx.AttributeProto.create({ name, type: AttributeType.STRING, s: new TextEncoder().encode(value) });
  }
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: AttributeType.INTS, ints: value });
  if (typeof value === "number") return onnx.AttributeProto.create({ name, type: AttributeType.INT, i: value });
  return onnx.AttributeProto.create({ name, type: AttributeType.FLOAT, f: value.float });
}

function toBytes(array: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
