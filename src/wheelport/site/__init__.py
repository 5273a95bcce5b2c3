"""The wheelhouse as a static site: ``simple/`` (:mod:`~wheelport.site.writer`) and
``index.html`` (:mod:`~wheelport.site.page`), written from a finished wheelhouse."""
