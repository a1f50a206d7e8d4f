// The brute-force oracle (search-oracle.test.mjs) again, with the store's "broad search" bound
// set to 3 index entries (BEVAN_SEARCH_BROAD): almost every search then takes the plans that a
// million-resource store uses for common codes and dates — the page read in rid order from one
// condition's index ("stream") or by walking the type ("scan"), counts by their own plan, and
// no default total — and every result must still equal the scan's, page by page.
process.env.BEVAN_SEARCH_BROAD = '3';
await import('./search-oracle.test.mjs');
