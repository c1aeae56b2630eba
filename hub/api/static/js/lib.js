// The console's one import of the UI library: Preact with hooks and htm's tagged
// templates, vendored (hub/api/static/vendor/VENDORED.json), no build step.
export {
  html,
  render,
  useState,
  useEffect,
  useRef,
  useMemo,
  useCallback,
  useContext,
  createContext,
} from "../vendor/htm-preact/standalone.module.js";
