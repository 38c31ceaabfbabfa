import { parseAllDocuments } from "yaml";

/** A parsed Kubernetes object: its shape is what the tests check. */
export type Manifest = Record<string, any>;

/** YAML documents as the API server reads them (YAML 1.1: `0440` is octal), empty ones dropped. */
export function parseManifests(text: string, source: string): Manifest[] {
  return parseAllDocuments(text, { version: "1.1" }).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(`${source}: ${document.errors[0].message}`);
    const object = document.toJS() as Manifest | null;
    return object === null ? [] : [object];
  });
}

/** Where a file a container reads comes from, when it lies in a Secret volume. */
export interface SecretFile {
  secretName: string;
  key: string;
  readOnly: boolean;
  defaultMode: number | undefined;
}

/**
 * Follows a path in a container to the Secret key behind it: the volume mounted at the path's
 * folder must be a secret volume, not mounted with subPath (kubelet never updates those), and the
 * file name must be one of its items (or, without items, a key of the Secret).
 */
export function secretFileAt(pod: Manifest, container: Manifest, path: string): SecretFile {
  const folder = path.slice(0, path.lastIndexOf("/"));
  const name = path.slice(path.lastIndexOf("/") + 1);
  const mount = (container.volumeMounts ?? []).find((m: Manifest) => m.mountPath.replace(/\/$/, "") === folder);
  if (!mount) throw new Error(`${container.name}: nothing is mounted at ${folder}`);
  if (mount.subPath) throw new Error(`${container.name}: ${folder} is a subPath mount`);
  const volume = (pod.volumes ?? []).find((v: Manifest) => v.name === mount.name);
  if (!volume?.secret) throw new Error(`${container.name}: ${folder} is not a secret volume`);
  const item = volume.secret.items ? volume.secret.items.find((i: Manifest) => i.path === name) : { key: name };
  if (!item) throw new Error(`${container.name}: secret volume ${volume.name} has no item ${name}`);
  return { secretName: volume.secret.secretName, key: item.key, readOnly: mount.readOnly === true, defaultMode: volume.secret.defaultMode };
}
